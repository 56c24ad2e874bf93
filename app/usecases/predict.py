"""Bayesian classifiers: predictive probabilities, the entropy split, and with labels the predictive
log-likelihood by IWAE and JVI on the per-draw log-likelihoods (``POST /v1/models/{name}/predict``)."""

from __future__ import annotations

import time

import torch

from logpx.estimators import estimate
from logpx.families import predictive_summary
from logpx.plan import EstimatorSpec, WeightDraws

from .. import presenter
from ..config import Settings
from ..errors import InvalidInput
from ..registry import ModelEntry
from ..schemas import Entropy, LogLikelihood, Prediction, PredictResponse
from ..worker import DeviceWorker, TaskContext
from . import advising, classifier, request_generator, timing

__all__ = ["predict"]


async def predict(
    entry: ModelEntry,
    worker: DeviceWorker,
    settings: Settings,
    x: torch.Tensor,
    labels: list[int] | None,
    jvi_spec: EstimatorSpec,
    seed: int,
    with_diagnostics: bool,
) -> PredictResponse:
    """Predictive class probabilities and entropy split from k posterior weight draws (``jvi_spec.k``)."""
    started = time.monotonic()
    model = classifier(entry)
    k = jvi_spec.k
    classes = model.classes
    if labels is not None:
        if len(labels) != x.shape[0]:
            raise InvalidInput(f"{len(labels)} labels for {x.shape[0]} inputs", field="labels", limit=x.shape[0])
        bad = [i for i, y in enumerate(labels) if not 0 <= y < classes]
        if bad:
            raise InvalidInput(
                f"labels[{bad[0]}] = {labels[bad[0]]} is not a class 0..{classes - 1}",
                field=f"labels[{bad[0]}]",
                limit=f"0..{classes - 1}",
            )
    generator = request_generator(entry, seed)

    def work(ctx: TaskContext) -> list[Prediction]:
        xd = x.to(entry.device)
        log_probs, _ = model.sample_forward(xd, k, generator, check_fn=ctx.check)
        summary = predictive_summary(log_probs)
        loglik: list[LogLikelihood | None] = [None] * x.shape[0]
        if labels is not None:
            y = torch.tensor(labels, device=xd.device)
            per_draw = model.label_log_likelihoods(log_probs, y).double()  # [k, B]: log p(y | x, w_i) <= 0
            draws = WeightDraws()
            iw = estimate(per_draw, EstimatorSpec("iwae", k), discrete=True, flag_nonfinite=True, sampler=draws)
            jv = estimate(per_draw, jvi_spec, discrete=True, flag_nonfinite=True, check_fn=ctx.check, sampler=draws)
            iwae_v, jvi_v, se = presenter.floats(iw.log_px), presenter.floats(jv.log_px), presenter.floats(jv.std_err)
            diagnostics = presenter.diagnostics_out(iw.diagnostics, k) if with_diagnostics else [None] * x.shape[0]
            verdicts = presenter.verdicts_out(jv.verdicts, advising(entry, settings, x.shape[0]))
            loglik = [
                LogLikelihood(
                    label=labels[i],
                    iwae=iwae_v[i],
                    jvi=jvi_v[i],
                    std_err=se[i],
                    diagnostics=diagnostics[i],
                    verdict=verdicts[i],
                )
                for i in range(x.shape[0])
            ]
        probs = summary.probs.cpu().tolist()
        return [
            Prediction(
                probs=probs[i],
                predicted=int(summary.predicted[i]),
                entropy=Entropy(
                    total=float(summary.entropy[i]),
                    aleatoric=float(summary.aleatoric[i]),
                    epistemic=float(summary.epistemic[i]),
                ),
                log_likelihood=loglik[i],
            )
            for i in range(x.shape[0])
        ]

    result = await worker.submit(work, settings.deadline_s)
    return PredictResponse(
        model=entry.name,
        device=entry.device,
        k=k,
        order=jvi_spec.order,
        seed=seed,
        predictions=result.value,
        timing=timing(result, started),
    )
