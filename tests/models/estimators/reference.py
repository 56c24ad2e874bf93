"""Independent float64 / mpmath references for the estimator tests: plain loops, no shared code."""

from __future__ import annotations

import itertools
import math

import mpmath


def lbar_brute(log_w: list[float], j: int) -> float:
    """``Lbar_{k-j}`` by listing every subset of size k - j, in mpmath at 50 digits."""
    mpmath.mp.dps = 50
    k = len(log_w)
    weights = [mpmath.exp(mpmath.mpf(v)) for v in log_w]
    total = mpmath.mpf(0)
    count = 0
    for subset in itertools.combinations(range(k), k - j):
        total += mpmath.log(sum(weights[i] for i in subset) / (k - j))
        count += 1
    return total / count


def jvi_brute(log_w: list[float], order: int) -> float:
    """JVI of ``order`` from the defining sum, coefficients from exact integers."""
    k = len(log_w)
    total = mpmath.mpf(0)
    for j in range(order + 1):
        c = mpmath.mpf((-1) ** j * (k - j) ** order) / (math.factorial(j) * math.factorial(order - j))
        total += c * lbar_brute(log_w, j)
    return float(total)


def leave_one_out_brute(log_w: list[float]) -> list[float]:
    mpmath.mp.dps = 50
    k = len(log_w)
    weights = [mpmath.exp(mpmath.mpf(v)) for v in log_w]
    return [float(mpmath.log((sum(weights) - weights[i]) / (k - 1))) for i in range(k)]
