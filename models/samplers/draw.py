"""``draw``: a sampler value of the plan (``logpx.plan``) and a model in, log-weights ``[k, B]`` out.

One function dispatched on the sampler's type, so that a new sampler is one module: its value (a
``logpx.plan.Sampler`` subclass) and its ``@draw.register`` implementation, nothing else.
"""

from __future__ import annotations

from functools import singledispatch
from typing import NamedTuple

import torch

from ..estimators import SamplerStats
from ..families import LatentVariableModel
from ..plan import AIS, Importance, Sampler
from ..runtime import CheckFn
from .ais import ais

__all__ = ["Draw", "draw"]


class Draw(NamedTuple):
    """``log_w`` ``[k, B]``; ``stats``: the sampler's per-input statistics (AIS), else ``None``."""

    log_w: torch.Tensor
    stats: SamplerStats | None


@singledispatch
def draw(
    sampler: Sampler,
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> Draw:
    """k log-weights per input of ``x`` (``[B, input_dim]`` on the model's device) from ``sampler``,
    activations chunked within ``max_elements``; ``check_fn`` may stop the work."""
    raise TypeError(f"the {sampler.name} sampler draws no log-weights from a model")


@draw.register
def _importance(
    sampler: Importance,
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> Draw:
    return Draw(model.log_weights(x, k, generator, max_elements=max_elements, check_fn=check_fn), None)


@draw.register
def _ais(
    sampler: AIS,
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> Draw:
    result = ais(model, x, k, sampler, generator, max_elements=max_elements, check_fn=check_fn)
    return Draw(result.log_w, SamplerStats(result.acceptance, result.step_size))
