"""Leave-j-out IWAE averages ``Lbar_{k-j}`` (docs/estimators.md), the building blocks of JVI.

``Lbar_{k-j}`` is the mean of the IWAE bound over all C(k, j) subsets of size k - j of the k samples
(Nowozin 2018, eq. (13)). Three exact paths and one sampled path:

* j = 1: O(k) from exclusive prefix and suffix log-cumulative sums; no subtraction, so it stays exact
  when a single normalised weight is within 1e-7 of 1.
* j = 2: O(k^2), a subtraction and a log per pair; the subtraction loses at most one bit because
  the pairs that hold the largest weight are done exactly in log space (``_leave_two_out_log_sum``).
* j >= 3: enumeration of the C(k, j) subsets when affordable.
* otherwise: uniformly random subsets, an unbiased estimate that reports its Monte Carlo variance.

Every path computes in float64 and returns float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .logspace import exclusive_logcumsumexp

__all__ = ["LbarResult", "exact_cost", "lbar", "lbar_enumerated", "leave_one_out"]

# Per-input element budget below which an exact path is used (a few hundred MB of float64 per chunk).
DEFAULT_EXACT_BUDGET = 2**24
DEFAULT_NUM_SAMPLED_SUBSETS = 4096
_CHUNK_ELEMENTS = 2**23  # elements per intermediate tensor, bounds memory of the O(k^2) paths


class LbarResult(NamedTuple):
    """``value``: ``[B]`` float64 ``Lbar_{k-j}``; ``mc_var``: ``[B]`` variance of a sampled estimate
    (zeros when exact); ``method``: ``"exact"`` or ``"sampled"``; ``num_subsets``: subsets averaged."""

    value: torch.Tensor
    mc_var: torch.Tensor
    method: str
    num_subsets: int


def leave_one_out(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE bounds with one sample left out, ``L_{-i} = log(1/(k-1) sum_{j != i} w_j)``.

    Parameters
    ----------
    log_w : ``[k, B]`` float tensor, k >= 2.

    Returns
    -------
    ``[k, B]`` float64: row i is ``L_{-i}``. O(k) per input.
    """
    lw = log_w.double()
    k = lw.shape[0]
    before = exclusive_logcumsumexp(lw, dim=0)  # [k, B] logsumexp(lw[:i])
    after = exclusive_logcumsumexp(lw, dim=0, reverse=True)  # [k, B] logsumexp(lw[i+1:])
    return torch.logaddexp(before, after) - math.log(k - 1)


def _leave_two_out_log_sum(lw: torch.Tensor) -> torch.Tensor:
    """Sum over all pairs a < b of ``log(S - w_a - w_b)``; ``lw`` is ``[k, B]`` float64. Returns ``[B]``.

    Let m be the index of the largest weight. Pairs that contain m: the remaining mass is a
    leave-one-out sum of the weights without m, computed exactly in log space (O(k)). Pairs that do not:
    the remaining mass is ``(S - w_a) - w_b``, where ``S - w_a`` is the exact leave-one-out sum. It still
    holds w_m >= w_b, so ``S - w_a <= 2 (S - w_a - w_b)``: the one subtraction loses at most one bit,
    however dominant the largest weights are, and the O(k^2) part is a subtraction and a log per pair
    in linear space, scaled by the largest weight so that it cannot overflow or underflow to zero.
    """
    k, batch = lw.shape
    top, m = lw.max(dim=0)  # [B]
    cols = torch.arange(batch, device=lw.device)
    without_m = lw.clone()
    without_m[m, cols] = -math.inf
    # Pairs (m, b): log of sum over i not in {m, b}, for b != m.
    with_m = torch.logaddexp(
        exclusive_logcumsumexp(without_m, dim=0), exclusive_logcumsumexp(without_m, dim=0, reverse=True)
    )  # [k, B]; row m is the sum without m alone, excluded next
    total = with_m.sum(dim=0) - with_m[m, cols]

    # The k - 1 weights other than m, in their original order, and their exact leave-one-out sums.
    keep = torch.arange(k - 1, device=lw.device).unsqueeze(1)  # [k-1, 1]
    keep = keep + (keep >= m.unsqueeze(0)).long()  # [k-1, B]: row indices skipping m
    loo_all = torch.logaddexp(exclusive_logcumsumexp(lw, dim=0), exclusive_logcumsumexp(lw, dim=0, reverse=True))
    loo = torch.exp(torch.gather(loo_all, 0, keep) - top)  # [k-1, B]: (S - w_a) / w_m
    w = torch.exp(torch.gather(lw, 0, keep) - top)  # [k-1, B]: w_b / w_m <= 1
    n = k - 1
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, n * batch))
    pair_sum = torch.zeros(batch, dtype=lw.dtype, device=lw.device)
    for a0 in range(0, n, rows_per_chunk):
        a1 = min(n, a0 + rows_per_chunk)
        # Columns b >= a1 all pair with every row of the chunk (b > a): no mask needed.
        if a1 < n:
            rest = loo[a0:a1].unsqueeze(1) - w[a1:].unsqueeze(0)  # [A, n - a1, B]; >= 1 in exact arithmetic
            pair_sum += rest.log_().sum(dim=(0, 1))
        # The triangle inside the chunk: b > a within [a0, a1).
        block = loo[a0:a1].unsqueeze(1) - w[a0:a1].unsqueeze(0)  # [A, A, B]
        upper = torch.ones(a1 - a0, a1 - a0, dtype=torch.bool, device=lw.device).triu(1).unsqueeze(-1)
        pair_sum += torch.where(upper, block, 1.0).log_().sum(dim=(0, 1))
    num_pairs_without_m = (k - 1) * (k - 2) // 2
    return total + pair_sum + num_pairs_without_m * top


def lbar_enumerated(log_w: torch.Tensor, j: int) -> torch.Tensor:
    """``Lbar_{k-j}`` by listing all C(k, j) subsets: O(C(k, j) k) per input.

    This is the reference computation of public JVI code; here it serves j >= 3 at small k and the
    benchmark baseline. ``log_w`` ``[k, B]``; returns ``[B]`` float64.
    """
    lw = log_w.double()
    k, batch = lw.shape
    drop = torch.combinations(torch.arange(k, device=lw.device), r=j).reshape(-1, j)  # [C, j] left out
    total = torch.zeros(batch, dtype=lw.dtype, device=lw.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, k * batch))
    for c0 in range(0, drop.shape[0], per_chunk):
        idx = drop[c0 : c0 + per_chunk]  # [c, j]
        mask = torch.zeros(idx.shape[0], k, dtype=torch.bool, device=lw.device).scatter_(1, idx, True)  # [c, k]
        kept = lw.unsqueeze(0).masked_fill(mask.unsqueeze(-1), -math.inf)  # [c, k, B]
        total += torch.logsumexp(kept, dim=1).sum(dim=0)
    return total / drop.shape[0] - math.log(k - j)


def exact_cost(k: int, j: int) -> int:
    """Elements an exact ``Lbar_{k-j}`` touches per input (the unit of ``exact_budget``)."""
    if j == 1:
        return k
    if j == 2:
        return k * (k - 1) // 2
    return math.comb(k, j) * k


def _lbar_sampled(lw: torch.Tensor, j: int, num_subsets: int, generator: torch.Generator | None) -> LbarResult:
    """Unbiased ``Lbar_{k-j}`` from ``num_subsets`` uniformly random subsets (shared across the batch)."""
    k, batch = lw.shape
    values = torch.empty(num_subsets, batch, dtype=lw.dtype, device=lw.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, k * batch))
    for c0 in range(0, num_subsets, per_chunk):
        c = min(per_chunk, num_subsets - c0)
        # A random permutation per subset; its first k - j entries are a uniform subset of size k - j.
        keys = torch.rand(c, k, generator=generator, device=lw.device)
        idx = keys.argsort(dim=1)[:, : k - j]  # [c, k-j]
        values[c0 : c0 + c] = torch.logsumexp(lw[idx], dim=1)  # [c, B]
    values -= math.log(k - j)
    mc_var = values.var(dim=0, unbiased=True) / num_subsets
    return LbarResult(values.mean(dim=0), mc_var, "sampled", num_subsets)


def lbar(
    log_w: torch.Tensor,
    j: int,
    *,
    exact_budget: int = DEFAULT_EXACT_BUDGET,
    num_sampled_subsets: int = DEFAULT_NUM_SAMPLED_SUBSETS,
    generator: torch.Generator | None = None,
    loo: torch.Tensor | None = None,
) -> LbarResult:
    """``Lbar_{k-j}``: the IWAE bound averaged over all subsets of size k - j (docs/estimators.md).

    Parameters
    ----------
    log_w : ``[k, B]`` float tensor with k > j.
    j : number of samples left out, 0 <= j < k.
    exact_budget : use an exact path when ``exact_cost(k, j)`` is at most this, else sample subsets.
    num_sampled_subsets : subsets drawn when sampling.
    generator : randomness for the sampled path (on ``log_w``'s device).
    loo : ``leave_one_out(log_w)`` when the caller already has it (j = 1 then costs nothing).

    Returns
    -------
    ``LbarResult`` with ``[B]`` float64 value and Monte Carlo variance.
    """
    lw = log_w.double()
    k, batch = lw.shape
    zeros = torch.zeros(batch, dtype=lw.dtype, device=lw.device)
    if j == 0:
        return LbarResult(torch.logsumexp(lw, dim=0) - math.log(k), zeros, "exact", 1)
    if exact_cost(k, j) > exact_budget:
        return _lbar_sampled(lw, j, num_sampled_subsets, generator)
    if j == 1:
        return LbarResult((leave_one_out(lw) if loo is None else loo).mean(dim=0), zeros, "exact", k)
    num_pairs = k * (k - 1) // 2
    if j == 2:
        value = _leave_two_out_log_sum(lw) / num_pairs - math.log(k - 2)
        return LbarResult(value, zeros, "exact", num_pairs)
    return LbarResult(lbar_enumerated(lw, j), zeros, "exact", math.comb(k, j))
