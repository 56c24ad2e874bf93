"""Leave-j-out IWAE averages ``Lbar_{k-j}`` (docs/estimators.md), the building blocks of JVI.

``Lbar_{k-j}`` is the mean of the IWAE bound over all C(k, j) subsets of size k - j of the k samples
(Nowozin 2018, eq. (13)). Three exact paths and one sampled path:

* j = 1: O(k) from exclusive prefix and suffix log-cumulative sums; no subtraction, so it stays exact
  when a single normalised weight is within 1e-7 of 1.
* j = 2: O(k^2), a subtraction and a log per pair; the subtraction loses at most one bit because
  the pairs that hold the largest weight are done exactly in log space (``_leave_two_out_log_sum``).
* j >= 3: enumeration of the C(k, j) subsets, only where that fits the budget.

There is no sampled path. Uniformly random subsets almost never drop the one dominant weight, so their
sample variance cannot see their real error, and the jackknife's coefficients (growing like k^m) turn
that unseen error into impossible values (log p(x) of +2,418 for a digit near -78, measured). A JVI
whose terms cannot all be exact is refused instead, naming the largest k at which it is exact.

Every path computes in float64 and returns float64.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

from ..runtime import CheckFn
from .logspace import exclusive_logcumsumexp

__all__ = ["LbarResult", "exact_cost", "jackknife_elements", "lbar", "lbar_enumerated", "leave_one_out"]

# Per-input elements an enumerated Lbar_{k-j} (j >= 3) may touch: C(k, j) k <= 2^24, about 0.1 s per input.
DEFAULT_EXACT_BUDGET = 2**24
_CHUNK_ELEMENTS = 2**23  # elements per intermediate tensor, bounds memory of the O(k^2) paths


class LbarResult(NamedTuple):
    """``value``: ``[B]`` float64 ``Lbar_{k-j}``; ``num_subsets``: subsets averaged."""

    value: torch.Tensor
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


def _leave_two_out_log_sum(lw: torch.Tensor, check_fn: CheckFn | None = None) -> torch.Tensor:
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
        if check_fn is not None:
            check_fn()  # O(k^2) work: a deadline or a cancellation stops it between chunks
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


def lbar_enumerated(log_w: torch.Tensor, j: int, check_fn: CheckFn | None = None) -> torch.Tensor:
    """``Lbar_{k-j}`` by listing all C(k, j) subsets: O(C(k, j) k) per input.

    This is the reference computation of public JVI code; here it serves j >= 3 at small k and the
    benchmark baseline. ``log_w`` ``[k, B]``; returns ``[B]`` float64.
    """
    lw = log_w.double()
    k, batch = lw.shape
    total = torch.zeros(batch, dtype=lw.dtype, device=lw.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, k * batch))
    # Subsets listed chunk by chunk: memory O(chunk), never the k^j grid that torch.combinations builds.
    subsets = itertools.combinations(range(k), j)
    while chunk := list(itertools.islice(subsets, per_chunk)):
        if check_fn is not None:
            check_fn()
        idx = torch.tensor(chunk, device=lw.device)  # [c, j] left out
        mask = torch.zeros(idx.shape[0], k, dtype=torch.bool, device=lw.device).scatter_(1, idx, True)  # [c, k]
        kept = lw.unsqueeze(0).masked_fill(mask.unsqueeze(-1), -math.inf)  # [c, k, B]
        total += torch.logsumexp(kept, dim=1).sum(dim=0)
    return total / math.comb(k, j) - math.log(k - j)


def jackknife_elements(k: int, order: int) -> int:
    """Elements the leave-j-out averages j = 2..order touch per input (leave-one-out is O(k), free beside
    them): what bounds a JVI's time, known before any work starts."""
    return sum(exact_cost(k, j) for j in range(2, order + 1))


def exact_cost(k: int, j: int) -> int:
    """Elements an exact ``Lbar_{k-j}`` touches per input (the unit of ``exact_budget``)."""
    if j == 1:
        return k
    if j == 2:
        return k * (k - 1) // 2
    return math.comb(k, j) * k


def max_exact_k(j: int, exact_budget: int = DEFAULT_EXACT_BUDGET) -> int:
    """The largest k at which ``Lbar_{k-j}`` is computed exactly within ``exact_budget`` (j >= 3; the
    j = 1 and j = 2 paths are exact at every k)."""
    k = j + 1
    while exact_cost(k + 1, j) <= exact_budget:
        k += 1
    return k


class NotExact(ValueError):
    """A leave-j-out average that cannot be computed exactly within the budget; ``largest_k`` is the
    largest k at which it can."""

    def __init__(self, j: int, k: int, largest_k: int) -> None:
        super().__init__(
            f"Lbar_(k-{j}) at k={k} would average C({k}, {j}) = {math.comb(k, j):.3g} subsets, too many to list; "
            f"a random subset of them cannot bound its own error (it rarely drops the dominant weight), so JVI of "
            f"this order is computed only where exact: k <= {largest_k}"
        )
        self.j, self.k, self.largest_k = j, k, largest_k


def check_exact(k: int, order: int, exact_budget: int = DEFAULT_EXACT_BUDGET) -> None:
    """``NotExact`` unless every ``Lbar_{k-j}``, j = 1..order, is exact within ``exact_budget``; it
    names the first term over budget and the largest k at which every term of this order fits."""
    over = [j for j in range(3, order + 1) if exact_cost(k, j) > exact_budget]
    if over:
        raise NotExact(over[0], k, min(max_exact_k(j, exact_budget) for j in range(3, order + 1)))


def lbar(
    log_w: torch.Tensor, j: int, *, loo: torch.Tensor | None = None, check_fn: CheckFn | None = None
) -> LbarResult:
    """``Lbar_{k-j}``: the IWAE bound averaged over all subsets of size k - j (docs/estimators.md).

    Parameters
    ----------
    log_w : ``[k, B]`` float tensor with k > j.
    j : number of samples left out, 0 <= j < k. j >= 3 enumerates the subsets; the caller checks the
        cost first (``check_exact``).
    loo : ``leave_one_out(log_w)`` when the caller already has it (j = 1 then costs nothing).
    check_fn : called between chunks of the O(k^2) and enumerating paths; may raise to stop the work.

    Returns
    -------
    ``LbarResult`` with a ``[B]`` float64 value, always exact.
    """
    lw = log_w.double()
    k = lw.shape[0]
    if j == 0:
        return LbarResult(torch.logsumexp(lw, dim=0) - math.log(k), 1)
    if j == 1:
        return LbarResult((leave_one_out(lw) if loo is None else loo).mean(dim=0), k)
    if j == 2:
        num_pairs = k * (k - 1) // 2
        return LbarResult(_leave_two_out_log_sum(lw, check_fn) / num_pairs - math.log(k - 2), num_pairs)
    return LbarResult(lbar_enumerated(lw, j, check_fn), math.comb(k, j))
