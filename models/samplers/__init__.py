"""Samplers: what turns a latent-variable model and inputs into log-weights ``[k, B]``.

``importance`` draws k latents from q(z | x); ``ais`` runs k annealed chains (``models.samplers.ais``).
Either way the estimators and diagnostics of ``models.estimators`` apply to the result unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ..estimators import SamplerStats
from ..families import LatentVariableModel
from .ais import AISConfig, AISResult, ais, reverse_ais, schedule
from .bdmc import BDMCResult, BDMCSummary, bdmc, simulate
from .bdmc import summarize as summarize_bdmc

__all__ = [
    "AISConfig",
    "AISResult",
    "BDMCResult",
    "BDMCSummary",
    "Draw",
    "ais",
    "bdmc",
    "draw",
    "reverse_ais",
    "schedule",
    "simulate",
    "summarize_bdmc",
]


class Draw(NamedTuple):
    """``log_w`` ``[k, B]``; ``stats``: the sampler's per-input statistics (AIS), else ``None``."""

    log_w: torch.Tensor
    stats: SamplerStats | None


def draw(
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    sampler: AISConfig | None,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: Callable[[], None] | None = None,
) -> Draw:
    """k log-weights per input of ``x`` from importance sampling (``sampler`` None) or AIS."""
    if sampler is None:
        return Draw(model.log_weights(x, k, generator, max_elements=max_elements, check_fn=check_fn), None)
    result = ais(model, x, k, sampler, generator, max_elements=max_elements, check_fn=check_fn)
    return Draw(result.log_w, SamplerStats(result.acceptance, result.step_size))
