"""Estimators on log-weights the client computed with its own model (``POST /v1/estimate``)."""

from __future__ import annotations

import time

import torch

from logpx.estimators import estimate
from logpx.plan import External, Plan

from .. import presenter
from ..config import Settings
from ..schemas import EstimateResponse, EstimatorResults
from ..worker import DeviceWorker, TaskContext
from . import timing

__all__ = ["estimate_log_weights"]


async def estimate_log_weights(
    worker: DeviceWorker, settings: Settings, log_w: torch.Tensor, plan: Plan, discrete: bool, with_diagnostics: bool
) -> EstimateResponse:
    """Every estimator of ``plan`` on ``log_w`` ``[k, B]``, judged as ``External`` weights (logpx cannot draw
    more of them; the plan's sampler only states that the rows are independent draws, as the API echoes it)."""
    started = time.monotonic()
    k, batch = log_w.shape

    def work(ctx: TaskContext) -> list[EstimatorResults]:
        out = []
        for e in plan.entries:
            est = estimate(log_w, e.spec, discrete=discrete, check_fn=ctx.check, sampler=External())
            out.append(
                EstimatorResults(
                    estimator=presenter.estimator_out(e, est.num_subsets),
                    results=presenter.input_estimates((e, est), presenter.NO_MODEL, with_diagnostics),
                )
            )
        return out

    result = await worker.submit(work, settings.deadline_s)
    return EstimateResponse(k=k, inputs=batch, estimators=result.value, timing=timing(result, started))
