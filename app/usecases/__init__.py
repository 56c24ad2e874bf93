"""The use cases of the data plane, one module per endpoint family: from a decoded input and a checked
``Plan`` to a response. Model work goes to the device worker as a task; every number comes from the library
(``logpx.samplers.run_plan``, the estimators, their verdicts) and reaches the client through
``logpx.app.presenter``. What a model can do is asked of its type, never of its family's name.

Every request's randomness comes from one generator on the model's device, seeded by the request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from logpx.estimators import bits_offset
from logpx.families import Classifier, LatentVariableModel
from logpx.plan import Plan
from logpx.samplers import fit_within

from ..config import Settings
from ..errors import DeadlineExceeded, PayloadTooLarge, WrongModelFamily
from ..presenter import Advising, Units
from ..registry import ModelEntry
from ..schemas import Timing
from ..worker import BatchItem, DeviceWorker, TaskContext, TaskResult

T = TypeVar("T")
# Work expected to take this many times the deadline is refused before it starts: the speed measured at load
# can be off by a third (docs/api.md), never by 3x, so nothing that could finish is refused.
REFUSE_OVER = 3

__all__ = ["advising", "classifier", "latent_model", "request_generator", "submit", "timing", "units_of"]


def latent_model(entry: ModelEntry) -> LatentVariableModel:
    """The entry's model if it estimates evidence (a latent-variable model), else 422."""
    model = entry.model
    if not isinstance(model, LatentVariableModel):
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: evidence does not apply; use POST /v1/models/{entry.name}/predict",
            field="name",
        )
    return model


def classifier(entry: ModelEntry) -> Classifier:
    """The entry's model if it is a Bayesian classifier, else 422."""
    model = entry.model
    if not isinstance(model, Classifier):
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: predict applies to Bayesian classifiers; "
            f"use POST /v1/models/{entry.name}/evidence",
            field="name",
        )
    return model


def request_generator(entry: ModelEntry, seed: int) -> torch.Generator:
    """The request's one source of randomness, on the model's device; torch's global RNG is never used."""
    return torch.Generator(device=entry.device).manual_seed(seed)


def units_of(entry: ModelEntry) -> Units:
    """How the model's log p(x) reads in bits per dimension: its input's size and its data's domain."""
    return Units(entry.model.input_dim, bits_offset(entry.domain))


def advising(entry: ModelEntry, settings: Settings, inputs: int) -> Advising:
    """Advice for a request on ``inputs`` of this model, made runnable: its cost at the model's measured speed
    against the request deadline and limits."""
    return Advising(entry.name, inputs, entry.speed, settings.deadline_s, settings)


async def submit(
    worker: DeviceWorker,
    work: Callable[[TaskContext], T] | BatchItem[Any, T],
    settings: Settings,
    entry: ModelEntry,
    plan: Plan,
    inputs: int,
    replicates: int = 1,
) -> TaskResult[T]:
    """The request's task on the worker; a 504 says what the plan costs here and what would fit: a job
    (no deadline), or the same plan scaled down to finish within the deadline. A plan expected to take
    ``REFUSE_OVER`` times the deadline is refused before it runs (413), with the same way out."""
    if entry.speed is not None:
        seconds = entry.speed.seconds(plan.cost(inputs, replicates))
        if seconds > REFUSE_OVER * settings.deadline_s:
            fit = fit_within(plan, entry.speed, inputs * replicates, 0.8 * settings.deadline_s)
            raise PayloadTooLarge(
                f"{plan} on {inputs} input(s) x {replicates} replicate(s) needs about {seconds:.0f} s of compute at "
                f"this server's measured speed, over {REFUSE_OVER}x its {settings.deadline_s:g} s deadline; run it as "
                "a job (POST /v1/jobs, no deadline)" + (f" or scale it to fit: {fit}" if fit is not None else ""),
                field="deadline_s",
                limit={
                    "deadline_s": settings.deadline_s,
                    "expected_s": round(seconds, 1),
                    "fits": str(fit) if fit else None,
                },
            )
    try:
        return await worker.submit(work, settings.deadline_s)
    except DeadlineExceeded as exc:
        if entry.speed is None:
            raise
        seconds = entry.speed.seconds(plan.cost(inputs, replicates))
        fit = fit_within(plan, entry.speed, inputs * replicates, 0.8 * settings.deadline_s)
        way_out = f" or scale it to fit: {fit}" if fit is not None else ""
        raise DeadlineExceeded(
            f"{exc.detail}: {plan} on {inputs} input(s) x {replicates} replicate(s) needs about {seconds:.0f} s of "
            f"compute at this server's measured speed, over its {settings.deadline_s:g} s deadline; run it as a job "
            f"(POST /v1/jobs, no deadline){way_out}",
            field=exc.field,
            limit={
                "deadline_s": settings.deadline_s,
                "expected_s": round(seconds, 1),
                "fits": str(fit) if fit else None,
            },
        ) from None


def timing(result: TaskResult[Any], started: float) -> Timing:
    """Queue and compute time of the request's task, and the whole request's since ``started``."""
    return Timing(queue_s=result.queue_s, compute_s=result.compute_s, total_s=time.monotonic() - started)
