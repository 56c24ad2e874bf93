"""AIS and BDMC against exact evidence: a linear-Gaussian model with a deliberately poor encoder, where
IWAE-1,000 is visibly biased and log p(x) is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from logpx.estimators import EstimatorSpec, estimate, log_mean_exp
from logpx.families import LinearGaussian
from logpx.plan import AIS
from logpx.samplers import ais, bdmc, reverse_ais, schedule, simulate

from ...helpers import poor_encoder_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_and_data() -> tuple[LinearGaussian, torch.Tensor, torch.Tensor]:
    model = poor_encoder_model()
    with torch.no_grad():
        x, _ = simulate(model, 6, torch.Generator().manual_seed(1))
        return model, x, model.exact_log_px(x)


def test_schedules_run_from_zero_to_one() -> None:
    for kind in ("sigmoid", "linear", "geometric"):
        b = schedule(50, kind)  # type: ignore[arg-type]
        assert b.shape == (51,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all(), kind


def test_ais_recovers_exact_evidence_where_iwae_is_biased(model_and_data) -> None:  # type: ignore[no-untyped-def]
    model, x, exact = model_and_data
    with torch.no_grad():
        iw = estimate(model.log_weights(x, 1000, torch.Generator().manual_seed(2)), EstimatorSpec("iwae", 1000))
        assert (iw.log_px - exact).mean() < -1, iw.log_px - exact  # the bias AIS must remove
        result = ais(model, x, 64, AIS(steps=2000, leapfrog=5), torch.Generator().manual_seed(3))
    est = estimate(result.log_w, EstimatorSpec("iwae", 64), sampler=AIS())
    error = est.log_px - exact
    assert (error.abs() <= 3 * est.std_err).all(), (error, est.std_err)
    assert (error.abs() <= 0.05).all(), error
    assert ((result.acceptance > 0.4) & (result.acceptance < 0.95)).all(), result.acceptance


@pytest.mark.parametrize(
    "config",
    [
        AIS(steps=500, leapfrog=5, schedule="linear"),
        AIS(steps=500, leapfrog=5, schedule="geometric"),
        AIS(steps=4000, leapfrog=5, init="prior"),
    ],
)
def test_every_schedule_and_start_is_consistent(model_and_data, config: AIS) -> None:  # type: ignore[no-untyped-def]
    model, x, exact = model_and_data
    with torch.no_grad():
        result = ais(model, x[:3], 32, config, torch.Generator().manual_seed(4))
    est = estimate(result.log_w, EstimatorSpec("iwae", 32), sampler=AIS())
    error = est.log_px - exact[:3]
    assert (error.abs() <= 3 * est.std_err + 0.02).all(), (config, error, est.std_err)


def test_same_seed_same_answer(model_and_data) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = model_and_data
    with torch.no_grad():
        a, b = (ais(model, x[:2], 4, AIS(steps=20, leapfrog=3), torch.Generator().manual_seed(9)) for _ in range(2))
    assert torch.equal(a.log_w, b.log_w) and torch.equal(a.step_size, b.step_size)


def test_the_cost_model_counts_the_evaluations_ais_makes(
    model_and_data,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``AIS.evaluations`` and ``bdmc_evaluations`` (request limits, job chunks, expected times) equal the
    gradient evaluations the samplers make, the coarser tuning pass included."""
    model, x, _ = model_and_data
    rows = 0
    log_joint = model.log_joint

    def counted(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        nonlocal rows
        rows += z.shape[:-1].numel()
        return log_joint(x, z)

    monkeypatch.setattr(model, "log_joint", counted)
    config = AIS(steps=300, leapfrog=2)
    assert config.tuning_temperatures(3) == 100 < config.temperatures  # the tuning pass is coarser here
    with torch.no_grad():
        ais(model, x[:2], 3, config, torch.Generator().manual_seed(0))
        assert rows == 2 * config.evaluations(3)
        rows = 0
        bdmc(model, 2, 3, config, torch.Generator().manual_seed(0))
        assert rows == 2 * config.bdmc_evaluations(3)


def test_bdmc_brackets_the_exact_evidence_and_its_gap_shrinks_with_steps(model_and_data) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = model_and_data
    gaps = []
    for steps in (5, 400):
        with torch.no_grad():
            result = bdmc(model, 16, 16, AIS(steps=steps, leapfrog=5), torch.Generator().manual_seed(5))
            exact = model.exact_log_px(result.x)
        lower, upper = result.lower - exact, result.upper - exact
        se = math.sqrt(16)
        # On average over inputs: lower <= exact <= upper, within two standard errors of the mean.
        assert float(lower.mean()) <= 2 * float(lower.std()) / se, lower
        assert float(upper.mean()) >= -2 * float(upper.std()) / se, upper
        gaps.append(float((result.upper - result.lower).mean()))
    assert gaps[1] < gaps[0] / 2, gaps


def test_reverse_ais_from_the_posterior_is_an_upper_bound_estimate(model_and_data) -> None:  # type: ignore[no-untyped-def]
    """E[1/w_rev] = 1/p(x): with many chains, -log-mean-exp(-log w_rev) converges to log p(x) from above."""
    model, _, _ = model_and_data
    with torch.no_grad():
        x, z = simulate(model, 4, torch.Generator().manual_seed(6))
        rev = reverse_ais(model, x, z, 64, AIS(steps=300, leapfrog=5), torch.Generator().manual_seed(7))
        exact = model.exact_log_px(x)
    upper = -log_mean_exp(-rev.log_w, dim=0)
    se = estimate(-rev.log_w, EstimatorSpec("iwae", 64)).std_err
    assert ((upper - exact).abs() <= 3 * se + 0.01).all(), (upper - exact, se)


def test_chunked_chains_keep_the_estimate(model_and_data) -> None:  # type: ignore[no-untyped-def]
    """A memory budget of a few chains per chunk: the same k chains' distribution, the same answer within
    its error, and all k log-weights."""
    model, x, exact = model_and_data
    budget = 3 * model.elements_per_sample() * x.shape[0] * 5  # 5 chains per chunk
    with torch.no_grad():
        result = ais(model, x, 32, AIS(steps=300, leapfrog=5), torch.Generator().manual_seed(8), max_elements=budget)
    assert result.log_w.shape == (32, x.shape[0])
    est = estimate(result.log_w, EstimatorSpec("iwae", 32), sampler=AIS())
    assert ((est.log_px - exact).abs() <= 3 * est.std_err + 0.05).all(), (est.log_px - exact, est.std_err)


def test_both_layers_of_a_two_layer_vae_are_annealed_together() -> None:
    """A tiny two-layer VAE, whose log p(x) IWAE-200,000 pins down: AIS over the concatenated (h1, h2)."""
    from tests.helpers import tiny_vae

    model = tiny_vae(seed=2, layers=2).double()
    x = (torch.rand(3, 784, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.3).double()
    with torch.no_grad():
        reference = estimate(
            model.log_weights(x, 200_000, torch.Generator().manual_seed(1)), EstimatorSpec("iwae", 200_000)
        )
        result = ais(model, x, 64, AIS(steps=300, leapfrog=5), torch.Generator().manual_seed(2))
    est = estimate(result.log_w, EstimatorSpec("iwae", 64), sampler=AIS(), discrete=True)
    assert (reference.diagnostics.khat < 0.5).all(), reference.diagnostics.khat
    error = est.log_px - reference.log_px
    assert (error.abs() <= 3 * (est.std_err**2 + reference.std_err**2).sqrt() + 0.01).all(), (error, est.std_err)
