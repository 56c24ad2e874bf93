"""Variance diagnostics of an importance-sampling estimate (docs/estimators.md).

All are pure functions of the log-weights ``[k, B]`` and return ``[B]``. The delta-method quantities
come from the asymptotic expansion of the IWAE bound (Nowozin 2018, Proposition 1):
``E[L_k] = log p(x) - mu2 / (2 k mu^2) + O(k^-2)`` and ``Var[L_k] = mu2 / (k mu^2) + O(k^-2)``, with
``mu2 / mu^2`` estimated by ``k / ess - 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._validate import check_log_weights
from .jackknife import leave_one_out
from .psis import _khat

__all__ = [
    "Diagnostics",
    "delta_bias",
    "delta_var",
    "diagnose",
    "ess",
    "jackknife_var",
    "jackknife_var_from_loo",
    "log_weight_var",
    "max_weight",
]


def _ess(log_w: torch.Tensor) -> torch.Tensor:
    return torch.exp(2 * torch.logsumexp(log_w, dim=0) - torch.logsumexp(2 * log_w, dim=0))


def _max_weight(log_w: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_w.max(dim=0).values - torch.logsumexp(log_w, dim=0))


def _log_weight_var(log_w: torch.Tensor) -> torch.Tensor:
    return log_w.var(dim=0, unbiased=True) if log_w.shape[0] > 1 else torch.full_like(log_w[0], float("nan"))


def _relative_variance(log_w: torch.Tensor) -> torch.Tensor:
    """``mu2 / mu^2`` estimated by ``k / ess - 1`` (exactly ``k sum wbar^2 - 1``)."""
    return log_w.shape[0] / _ess(log_w) - 1


def ess(log_w: torch.Tensor) -> torch.Tensor:
    """Kish effective sample size ``1 / sum_i wbar_i^2 = (sum w)^2 / sum w^2``. ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return _ess(log_w)


def max_weight(log_w: torch.Tensor) -> torch.Tensor:
    """Largest self-normalised weight ``max_i wbar_i``. ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return _max_weight(log_w)


def log_weight_var(log_w: torch.Tensor) -> torch.Tensor:
    """Unbiased sample variance of ``log w_i``. ``[k, B] -> [B]``; ``nan`` for k = 1."""
    check_log_weights(log_w)
    return _log_weight_var(log_w)


def delta_bias(log_w: torch.Tensor) -> torch.Tensor:
    """Delta-method bias of ``L_k``: ``-(mu2 / mu^2) / (2 k)``. ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return -_relative_variance(log_w) / (2 * log_w.shape[0])


def delta_var(log_w: torch.Tensor) -> torch.Tensor:
    """Delta-method variance of ``L_k``: ``(mu2 / mu^2) / k``. ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return _relative_variance(log_w) / log_w.shape[0]


def jackknife_var(log_w: torch.Tensor) -> torch.Tensor:
    """Jackknife variance of ``L_k``: ``((k-1)/k) sum_i (L_{-i} - Lbar_{k-1})^2`` (Efron 1981).

    ``[k, B] -> [B]``, k >= 2; O(k) through the exact leave-one-out bounds.
    """
    check_log_weights(log_w, min_k=2)
    return jackknife_var_from_loo(leave_one_out(log_w)).to(log_w.dtype)


def jackknife_var_from_loo(loo: torch.Tensor) -> torch.Tensor:
    """The jackknife variance from the leave-one-out bounds ``loo`` ``[k, B]`` (``leave_one_out``)."""
    k = loo.shape[0]
    centred = loo - loo.mean(dim=0)
    return (k - 1) / k * (centred * centred).sum(dim=0)


class Diagnostics(NamedTuple):
    """Every diagnostic of docs/estimators.md for one set of log-weights; each field ``[B]``."""

    ess: torch.Tensor
    ess_fraction: torch.Tensor
    max_weight: torch.Tensor
    log_weight_var: torch.Tensor
    khat: torch.Tensor
    delta_bias: torch.Tensor
    delta_var: torch.Tensor
    jackknife_var: torch.Tensor


def diagnose(log_w: torch.Tensor, loo: torch.Tensor | None = None) -> Diagnostics:
    """All diagnostics of ``log_w`` ``[k, B]`` (k >= 2); ``loo``: ``leave_one_out(log_w)`` if at hand."""
    check_log_weights(log_w, min_k=2)
    return _diagnose(log_w, loo)


def _diagnose(log_w: torch.Tensor, loo: torch.Tensor | None) -> Diagnostics:
    """``diagnose`` on log-weights already validated."""
    k = log_w.shape[0]
    effective = _ess(log_w)
    relative_variance = k / effective - 1  # mu2 / mu^2, from the ESS already computed
    return Diagnostics(
        ess=effective,
        ess_fraction=effective / k,
        max_weight=_max_weight(log_w),
        log_weight_var=_log_weight_var(log_w),
        khat=_khat(log_w),
        delta_bias=-relative_variance / (2 * k),
        delta_var=relative_variance / k,
        jackknife_var=jackknife_var_from_loo(leave_one_out(log_w) if loo is None else loo).to(log_w.dtype),
    )
