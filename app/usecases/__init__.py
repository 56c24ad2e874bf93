"""The use cases of the data plane, one module per endpoint family: from a decoded input and a checked
``Plan`` to a response. Model work goes to the device worker as a task; every number comes from the library
(``logpx.samplers.run_plan``, the estimators, their verdicts) and reaches the client through
``logpx.app.presenter``. What a model can do is asked of its type, never of its family's name.

Every request's randomness comes from one generator on the model's device, seeded by the request."""

from __future__ import annotations

import time
from typing import Any

import torch

from logpx.families import Classifier, LatentVariableModel

from ..errors import WrongModelFamily
from ..registry import ModelEntry
from ..schemas import Timing
from ..worker import TaskResult

__all__ = ["classifier", "latent_model", "request_generator", "timing"]


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


def timing(result: TaskResult[Any], started: float) -> Timing:
    """Queue and compute time of the request's task, and the whole request's since ``started``."""
    return Timing(queue_s=result.queue_s, compute_s=result.compute_s, total_s=time.monotonic() - started)
