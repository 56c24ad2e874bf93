"""Estimators against brute-force subset enumeration, dominated weights, and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from logpx import EstimatorSpec, elbo, estimate, iwae, jvi, jvi_coefficients
from logpx.estimators.jackknife import DEFAULT_EXACT_BUDGET, NotExact, exact_cost, lbar, lbar_enumerated, leave_one_out

from .reference import jvi_brute, lbar_brute, leave_one_out_brute


def _log_weights(k: int, batch: int, scale: float, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(k, batch, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("k", [4, 7, 10])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_jvi_matches_brute_force(k: int, order: int, dtype: torch.dtype, rtol: float) -> None:
    if order >= k:
        pytest.skip("order must be < k")
    log_w = _log_weights(k, 3, scale=3.0, seed=k * 10 + order, dtype=dtype)
    got = jvi(log_w, order)
    assert got.value.dtype == dtype and got.value.shape == (3,)
    assert got.num_subsets == tuple(math.comb(k, j) for j in range(1, order + 1))
    for b in range(3):
        want = jvi_brute([float(v) for v in log_w[:, b]], order)
        assert abs(float(got.value[b]) - want) <= rtol * abs(want), (b, float(got.value[b]), want)


@pytest.mark.parametrize("j", [1, 2, 3])
def test_lbar_matches_brute_force(j: int) -> None:
    log_w = _log_weights(9, 2, scale=5.0, seed=j)
    got = lbar(log_w, j).value
    for b in range(2):
        want = float(lbar_brute([float(v) for v in log_w[:, b]], j))
        assert got[b].item() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_elbo_and_iwae_definitions() -> None:
    log_w = _log_weights(6, 4, scale=2.0, seed=0)
    assert torch.allclose(elbo(log_w), log_w.mean(0))
    want = torch.log(torch.exp(log_w).mean(0))
    assert torch.allclose(iwae(log_w), want, rtol=1e-13)


@pytest.mark.parametrize("k,order", [(2, 1), (5, 2), (10, 3), (50, 4)])
def test_coefficients_sum_to_one(k: int, order: int) -> None:
    assert math.fsum(jvi_coefficients(k, order)) == pytest.approx(1.0, abs=1e-12 * k**order)


def test_jvi_order_one_closed_form() -> None:
    log_w = _log_weights(12, 5, scale=1.0, seed=3)
    k = 12
    want = k * iwae(log_w) - (k - 1) * leave_one_out(log_w).mean(0)
    assert torch.allclose(jvi(log_w, 1).value, want, rtol=1e-12)


def _dominated(k: int) -> torch.Tensor:
    """One log-weight 30 nats above the rest: its normalised weight is within 1e-7 of 1 (1 - ~1e-12 k)."""
    g = torch.Generator().manual_seed(7)
    log_w = -30.0 - torch.rand(k, 2, generator=g, dtype=torch.float64)
    log_w[3, 0] = 0.0
    log_w[k - 1, 1] = 0.0
    return log_w


def test_leave_one_out_exact_when_one_weight_dominates() -> None:
    log_w = _dominated(20)
    wbar_max = torch.exp(log_w.max(0).values - torch.logsumexp(log_w, 0))
    assert (1 - wbar_max < 1e-7).all()
    got = leave_one_out(log_w)
    for b in range(2):
        want = leave_one_out_brute([float(v) for v in log_w[:, b]])
        assert max(abs(g - w) for g, w in zip(got[:, b].tolist(), want)) <= 1e-9
    # The closed form log S + log1p(-w_i / S) is what this guards against: it loses the dominated case.
    naive = torch.logsumexp(log_w, 0) + torch.log1p(-torch.exp(log_w - torch.logsumexp(log_w, 0))) - math.log(19)
    assert (naive[3, 0] - got[3, 0]).abs() > 1e-6


@pytest.mark.parametrize("order", [1, 2])
def test_jvi_exact_when_one_weight_dominates(order: int) -> None:
    log_w = _dominated(12)
    got = jvi(log_w, order).value
    for b in range(2):
        want = jvi_brute([float(v) for v in log_w[:, b]], order)
        assert abs(got[b].item() - want) <= 1e-9


def test_leave_two_out_matches_enumeration_at_larger_k() -> None:
    log_w = _log_weights(60, 3, scale=4.0, seed=11)
    assert torch.allclose(lbar(log_w, 2).value, lbar_enumerated(log_w, 2), rtol=1e-12)


def test_orders_that_cannot_be_exact_are_refused_never_sampled() -> None:
    """The issue's cases: order 3 at k = 1,000 (+63,098 when sampled) and order 4 (+6.5e7) are refused,
    naming the largest k at which they are exact; order 2 is exact at every k."""
    log_w = _log_weights(1000, 1, scale=3.0, seed=5)
    for order in (3, 4):
        with pytest.raises(NotExact) as info:
            jvi(log_w, order)
        largest = info.value.largest_k
        assert exact_cost(largest, order) <= DEFAULT_EXACT_BUDGET < exact_cost(largest + 1, order)
        assert f"k <= {largest}" in str(info.value)
        jvi(log_w[:largest], order)  # at the largest k it runs, exactly
        with pytest.raises(ValueError):
            EstimatorSpec("jvi", largest + 1, order)
    assert jvi(log_w, 2).num_subsets == (1000, 1000 * 999 // 2)


def test_estimate_reports_std_err_and_uses_first_k_rows() -> None:
    log_w = _log_weights(40, 3, scale=1.0, seed=2)
    est = estimate(log_w, EstimatorSpec("iwae", 20))
    assert torch.allclose(est.log_px, iwae(log_w[:20]))
    assert est.diagnostics is not None and est.diagnostics.ess.shape == (3,)
    assert (est.std_err > 0).all()


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.zeros(5), r"shape \[k, B\], got shape \(5,\)"),
        (torch.zeros(5, 2, dtype=torch.int64), "floating dtype"),
        (torch.full((5, 2), float("nan")), "NaN"),
    ],
)
def test_validation_names_the_problem(bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        iwae(bad)


def test_jvi_rejects_order_not_below_k() -> None:
    with pytest.raises(ValueError, match="order=3, k=3"):
        jvi(torch.zeros(3, 1), 3)
    with pytest.raises(ValueError, match="order"):
        EstimatorSpec("jvi", k=5, order=5)


def test_minus_inf_log_weights_are_zero_weights() -> None:
    log_w = torch.tensor([[0.0], [-math.inf], [-1.0], [-2.0], [-0.5]], dtype=torch.float64)
    finite = log_w[[0, 2, 3, 4]]
    # A zero weight changes k but nothing else: compare against the same sum directly.
    assert iwae(log_w).item() == pytest.approx(torch.logsumexp(finite, 0).item() - math.log(5))
    assert math.isfinite(jvi(log_w, 2).value.item())


def test_estimate_validates_its_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One validation (a full pass and a device sync) per public call, however many estimators and
    diagnostics run behind it."""
    import logpx.estimators._validate as validate
    import logpx.estimators.evidence as evidence

    calls = []
    original = validate.check_log_weights

    def counting(*args: object, **kwargs: object) -> None:
        calls.append(1)
        original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evidence, "check_log_weights", counting)
    log_w = torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for spec in (EstimatorSpec("iwae", 100), EstimatorSpec("jvi", 100, 2), EstimatorSpec("elbo", 100)):
        calls.clear()
        estimate(log_w, spec)
        assert len(calls) == 1, spec
