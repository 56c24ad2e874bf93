"""Bias order of IWAE and JVI on log-normal weights, where log p(x) = 0 exactly (docs/estimators.md).

log w ~ N(-s^2/2, s^2) gives E w = 1. With s = 1, mu2/mu^2 = e - 1, so the IWAE bias is about
-(e - 1)/(2k). Each replicate's estimate y is paired with the control variate mean(w) - 1, whose mean is
exactly 0: y - (mean(w) - 1) has the same expectation and a far smaller variance (the first-order
fluctuation of every estimator here is that same linear term). The replicate counts come from the
per-replicate standard deviations of that difference (measured once: about 0.38 / k at these k), chosen
so that each margin below is at least three standard errors; every test also asserts that it is.
"""

from __future__ import annotations

import math

import pytest
import torch

from logpx import iwae, jvi

S = 1.0
IWAE_BIAS_CONSTANT = -(math.exp(S * S) - 1) / 2  # bias ~ IWAE_BIAS_CONSTANT / k


def measured_bias(k: int, replicates: int, seed: int, orders: tuple[int, ...] = ()) -> dict[str, tuple[float, float]]:
    """Mean and standard error of (estimate - control variate) for iwae and the given jvi orders."""
    g = torch.Generator().manual_seed(seed)
    sums: dict[str, list[torch.Tensor]] = {}
    for start in range(0, replicates, 500_000):
        n = min(500_000, replicates - start)
        log_w = torch.randn(k, n, generator=g, dtype=torch.float64) * S - S * S / 2
        control = torch.exp(log_w).mean(0) - 1
        sums.setdefault("iwae", []).append(iwae(log_w) - control)
        for m in orders:
            sums.setdefault(f"jvi{m}", []).append(jvi(log_w, m).value - control)
    out = {}
    for name, parts in sums.items():
        y = torch.cat(parts)
        out[name] = (y.mean().item(), y.std().item() / math.sqrt(y.numel()))
    return out


@pytest.mark.parametrize("k", [64, 256])
def test_iwae_bias_matches_delta_method(k: int) -> None:
    predicted = IWAE_BIAS_CONSTANT / k
    tolerance = 0.10 * abs(predicted)
    mean, se = measured_bias(k, replicates=40_000, seed=k)["iwae"]
    assert 3 * se <= tolerance, f"too few replicates: se={se:.2e}"
    assert abs(mean - predicted) <= tolerance, (mean, predicted)


@pytest.mark.slow
def test_jvi_order_one_shrinks_bias_faster_than_one_over_k() -> None:
    biases = {}
    for k, replicates in ((4, 2_000_000), (8, 2_000_000), (16, 1_000_000)):
        biases[k] = measured_bias(k, replicates, seed=100 + k, orders=(1,))
    iwae16, iwae16_se = biases[16]["iwae"]
    jvi16, jvi16_se = biases[16]["jvi1"]
    # At k = 16, JVI-1's bias is at least 4x smaller than IWAE's, by at least 3 standard errors.
    ratio = abs(iwae16) / abs(jvi16)
    ratio_se = ratio * math.hypot(iwae16_se / iwae16, jvi16_se / jvi16)
    assert ratio - 3 * ratio_se >= 4, (ratio, ratio_se)
    # Per doubling of k the bias shrinks by at least 2.5 (IWAE's shrinks by 2): O(k^-2) vs O(k^-1).
    for small, large in ((4, 8), (8, 16)):
        (b_small, se_small), (b_large, se_large) = biases[small]["jvi1"], biases[large]["jvi1"]
        ratio = b_small / b_large
        ratio_se = ratio * math.hypot(se_small / b_small, se_large / b_large)
        assert ratio - 3 * ratio_se >= 2.5, (small, large, ratio, ratio_se)


def test_jvi_order_two_bias_below_order_one() -> None:
    b = measured_bias(8, 400_000, seed=8, orders=(1, 2))
    (b1, se1), (b2, se2) = b["jvi1"], b["jvi2"]
    assert abs(b1) - abs(b2) >= 3 * math.hypot(se1, se2), (b1, b2, se1, se2)
    assert b1 < 0 and b2 < 0  # both still underestimate here, order 2 less so
