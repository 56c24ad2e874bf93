"""Evidence estimators as pure functions of log-weights (docs/estimators.md).

Every function takes ``log_w`` of shape ``[k, B]`` (k importance samples for each of B inputs), any
floating dtype, any device, and returns ``[B]`` in ``log_w``'s dtype. Internally the jackknife works in
float64: its coefficients alternate in sign and grow like k^m, so each ``Lbar`` must be accurate to far
better than the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ._validate import check_log_weights
from .jackknife import DEFAULT_EXACT_BUDGET, check_exact, lbar
from .logspace import log_mean_exp

__all__ = ["JVIResult", "elbo", "iwae", "jvi", "jvi_coefficients"]


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    """ELBO estimate ``mean_i log w_i``. ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return log_w.mean(dim=0)


def iwae(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE bound ``L_k = logsumexp_i log w_i - log k`` (Burda et al. 2016, eq. (8)). ``[k, B] -> [B]``."""
    check_log_weights(log_w)
    return log_mean_exp(log_w, dim=0)


def jvi_coefficients(k: int, order: int) -> list[float]:
    """Generalised-jackknife (Sharot) coefficients ``c(k, m, j)``, j = 0..m (Nowozin 2018, eq. (15)).

    ``c(k, m, j) = (-1)^j (k - j)^m / (j! (m - j)!)``; they sum to 1. Computed from exact integers.
    """
    if not 1 <= order < k:
        raise ValueError(f"jvi needs 1 <= order < k, got order={order}, k={k}")
    return [(-1) ** j * (k - j) ** order / (math.factorial(j) * math.factorial(order - j)) for j in range(order + 1)]


class JVIResult(NamedTuple):
    """``value``: ``[B]`` estimate; ``num_subsets``: per j = 1..m, the subsets each ``Lbar_{k-j}``
    averaged (all of them: every term is exact)."""

    value: torch.Tensor
    num_subsets: tuple[int, ...]


def jvi(
    log_w: torch.Tensor, order: int = 1, *, exact_budget: int = DEFAULT_EXACT_BUDGET, loo: torch.Tensor | None = None
) -> JVIResult:
    """Jackknife variational inference estimate of order m (Nowozin 2018, eq. (14)).

    ``JVI_m = sum_{j=0..m} c(k, m, j) Lbar_{k-j}``, bias O(k^-(m+1)).

    Parameters
    ----------
    log_w : ``[k, B]`` float tensor with k > order.
    order : m, 1 <= m < k.
    exact_budget : see ``logpx.estimators.jackknife.check_exact``: orders of 3 and more enumerate their
        subsets, and ``NotExact`` (a ``ValueError``) is raised where that is over the budget.
    loo : ``leave_one_out(log_w)``, if already computed (shared with the jackknife variance).

    Returns
    -------
    ``JVIResult``; ``value`` is ``[B]`` in ``log_w``'s dtype.
    """
    check_log_weights(log_w, min_k=2)
    check_exact(log_w.shape[0], order, exact_budget)
    return _jvi(log_w, order, loo)


def _jvi(
    log_w: torch.Tensor, order: int, loo: torch.Tensor | None, check_fn: Callable[[], None] | None = None
) -> JVIResult:
    """``jvi`` on log-weights already validated and an order already checked."""
    k = log_w.shape[0]
    coeffs = jvi_coefficients(k, order)
    value = torch.zeros(log_w.shape[1], dtype=torch.float64, device=log_w.device)
    subsets = []
    for j, c in enumerate(coeffs):
        term = lbar(log_w, j, loo=loo, check_fn=check_fn)
        value += c * term.value
        if j > 0:
            subsets.append(term.num_subsets)
    return JVIResult(value.to(log_w.dtype), tuple(subsets))
