"""Small log-space primitives used by the jackknife and diagnostics."""

from __future__ import annotations

import math

import torch

__all__ = ["exclusive_logcumsumexp", "log_mean_exp"]


def exclusive_logcumsumexp(x: torch.Tensor, dim: int = 0, reverse: bool = False) -> torch.Tensor:
    """``out[i] = logsumexp(x[:i])`` (or ``x[i+1:]`` when ``reverse``), ``-inf`` for the empty sum.

    Shape is that of ``x``. Only additions of non-negative terms: no cancellation anywhere.
    """
    if reverse:
        return exclusive_logcumsumexp(x.flip(dim), dim=dim).flip(dim)
    inclusive = torch.logcumsumexp(x, dim=dim)
    pad_shape = list(x.shape)
    pad_shape[dim] = 1
    pad = torch.full(pad_shape, -math.inf, dtype=x.dtype, device=x.device)
    return torch.cat([pad, inclusive.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log(mean(exp(x)))`` along ``dim``."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])
