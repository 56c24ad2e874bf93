"""Diagnostics against closed forms on hand-built weights, and k-hat against known Pareto shapes."""

from __future__ import annotations

import pytest
import torch

from logpx import diagnose
from logpx.estimators.diagnostics import delta_bias, delta_var, ess, jackknife_var, max_weight
from logpx.estimators.jackknife import leave_one_out
from logpx.estimators.psis import khat, khat_threshold, tail_length


def _log(weights: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor(weights, dtype=torch.float64)).unsqueeze(1)


@pytest.mark.parametrize(
    "weights,want_ess",
    [([1.0, 1.0, 1.0, 1.0], 4.0), ([1.0, 0.0, 0.0, 0.0], 1.0), ([2.0, 1.0, 1.0], 16.0 / 6.0), ([3.0, 1.0], 1.6)],
)
def test_ess_and_delta_method_closed_forms(weights: list[float], want_ess: float) -> None:
    log_w = _log(weights)
    k = len(weights)
    assert ess(log_w).item() == pytest.approx(want_ess, rel=1e-12)
    relvar = k / want_ess - 1  # mu2 / mu^2 estimated by k sum wbar^2 - 1
    assert delta_var(log_w).item() == pytest.approx(relvar / k, abs=1e-12)
    assert delta_bias(log_w).item() == pytest.approx(-relvar / (2 * k), abs=1e-12)
    assert max_weight(log_w).item() == pytest.approx(max(weights) / sum(weights), rel=1e-12)


def test_jackknife_variance_definition() -> None:
    log_w = torch.randn(9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loo = leave_one_out(log_w)
    want = (8 / 9) * ((loo - loo.mean(0)) ** 2).sum(0)
    assert torch.allclose(jackknife_var(log_w), want, rtol=1e-12)


def test_diagnose_shapes_and_fractions() -> None:
    log_w = torch.randn(400, 5, generator=torch.Generator().manual_seed(1))
    d = diagnose(log_w)
    for value in d:
        assert value.shape == (5,)
    assert torch.allclose(d.ess_fraction, d.ess / 400)
    assert ((d.ess >= 1) & (d.ess <= 400)).all()


def test_tail_length_and_threshold() -> None:
    assert tail_length(100) == 20 and tail_length(10_000) == 300
    assert khat_threshold(100) == pytest.approx(0.5) and khat_threshold(10**6) == 0.7


@pytest.mark.parametrize("xi", [0.2, 0.5, 0.9])
def test_khat_recovers_pareto_shape(xi: float) -> None:
    """Generalised-Pareto weights w = ((1 - U)^-xi - 1) / xi: mean k-hat over 100 draws within 0.1 of xi."""
    g = torch.Generator().manual_seed(int(xi * 100))
    u = torch.rand(10_000, 100, generator=g, dtype=torch.float64)
    weights = (torch.pow(1 - u, -xi) - 1) / xi
    k_hat = khat(torch.log(weights))
    assert torch.isfinite(k_hat).all()
    assert abs(k_hat.mean().item() - xi) <= 0.1, k_hat.mean().item()


def test_khat_undefined_cases_are_nan() -> None:
    assert torch.isnan(khat(torch.zeros(10, 2))).all()  # tail of 2 < 5 points
    assert torch.isnan(khat(torch.zeros(100, 2))).all()  # all weights equal: no tail to fit
