"""Small log-space primitives used by the jackknife and diagnostics."""

from __future__ import annotations

import math

import torch

__all__ = ["log1mexp", "exclusive_logcumsumexp", "log_mean_exp"]


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate on both branches (Maechler 2012, eq. (7)).

    ``log(-expm1(x))`` near 0 and ``log1p(-exp(x))`` far from it; ``x = 0`` gives ``-inf``.
    """
    near_zero = x > -math.log(2.0)
    # Evaluate each branch on a safe argument so that neither produces a NaN that `where` would keep.
    a = torch.where(near_zero, x, torch.full_like(x, -1.0))
    b = torch.where(near_zero, torch.full_like(x, -1.0), x)
    return torch.where(near_zero, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(b)))


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
