"""Invariances every estimator and diagnostic must have, checked by hypothesis."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logpx import EstimatorSpec, estimate, jvi_coefficients

log_weight_arrays = st.integers(3, 12).flatmap(
    lambda k: st.lists(st.lists(st.floats(-40, 40), min_size=2, max_size=2), min_size=k, max_size=k)
)
specs = st.sampled_from(
    [EstimatorSpec("elbo", 3), EstimatorSpec("iwae", 3), EstimatorSpec("jvi", 3, 1), EstimatorSpec("jvi", 3, 2)]
)


@settings(max_examples=60, deadline=None)
@given(rows=log_weight_arrays, shift=st.floats(-50, 50), spec=specs)
def test_shift_adds_to_estimate_and_leaves_diagnostics(
    rows: list[list[float]], shift: float, spec: EstimatorSpec
) -> None:
    log_w = torch.tensor(rows, dtype=torch.float64)
    spec = EstimatorSpec(spec.name, log_w.shape[0], min(spec.order, log_w.shape[0] - 1))
    base = estimate(log_w, spec)
    moved = estimate(log_w + shift, spec)
    scale = 1e-9 * (1 + log_w.abs().max().item() + abs(shift)) * log_w.shape[0] ** spec.order
    assert torch.allclose(moved.log_px, base.log_px + shift, atol=scale, rtol=0)
    for name, a, b in zip(base.diagnostics._fields, base.diagnostics, moved.diagnostics):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-6, equal_nan=True), name


@settings(max_examples=60, deadline=None)
@given(rows=log_weight_arrays, seed=st.integers(0, 2**16), spec=specs)
def test_permuting_samples_changes_nothing(rows: list[list[float]], seed: int, spec: EstimatorSpec) -> None:
    log_w = torch.tensor(rows, dtype=torch.float64)
    spec = EstimatorSpec(spec.name, log_w.shape[0], min(spec.order, log_w.shape[0] - 1))
    perm = torch.randperm(log_w.shape[0], generator=torch.Generator().manual_seed(seed))
    base = estimate(log_w, spec)
    permuted = estimate(log_w[perm], spec)
    tol = 1e-9 * (1 + log_w.abs().max().item()) * log_w.shape[0] ** spec.order
    assert torch.allclose(base.log_px, permuted.log_px, atol=tol, rtol=0)
    for name, a, b in zip(base.diagnostics._fields, base.diagnostics, permuted.diagnostics):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9, equal_nan=True), name


@given(k=st.integers(2, 200), data=st.data())
def test_coefficients_sum_to_one(k: int, data: st.DataObject) -> None:
    order = data.draw(st.integers(1, min(k - 1, 6)))
    coeffs = jvi_coefficients(k, order)
    assert abs(math.fsum(coeffs) - 1) <= 1e-15 * k**order


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(3, 40),
    data=st.data(),
    center=st.floats(-200, 5),
    spread=st.floats(0, 30),
    seed=st.integers(0, 2**16),
)
def test_no_estimate_of_a_discrete_likelihood_is_above_zero(
    k: int, data: st.DataObject, center: float, spread: float, seed: int
) -> None:
    """Whatever the weights, order and k: for a probability mass, log p(x) > 0 never comes back as a
    number; it comes back as NaN (null in JSON) with an 'unreliable' verdict that says why."""
    name = data.draw(st.sampled_from(["elbo", "iwae", "jvi"]))
    order = data.draw(st.integers(1, min(k - 1, 4)))
    log_w = center + spread * torch.randn(k, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    est = estimate(log_w, EstimatorSpec(name, k, order), discrete=True)
    assert not (est.log_px > 0).any()
    for value, verdict in zip(est.log_px.tolist(), est.verdicts, strict=True):
        if math.isnan(value):
            assert verdict.level == "unreliable" and any(
                "impossible" in r or "not finite" in r for r in verdict.reasons
            )
