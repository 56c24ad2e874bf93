"""The advice a verdict gives depends on what drew the log-weights: each sampler gets advice it can act on."""

from __future__ import annotations

import pytest
import torch

from logpx import EstimatorSpec, estimate
from logpx.estimators.verdict import AIS_ADVICE, AIS_RERUN, EXTERNAL_ADVICE, WEIGHT_DRAWS_ADVICE

# Log-normal weights with sigma = 3: the weights' tail is far heavier than k-hat 0.7 allows at any k used here
# (seeded, so the verdict is fixed; the assertion on the level below says it).
HEAVY = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
LIGHT = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1


@pytest.mark.parametrize(
    ("sampler", "advice", "rerun"),
    [
        ("importance", AIS_ADVICE, AIS_RERUN),
        ("weights", WEIGHT_DRAWS_ADVICE, None),  # a classifier's draws from q(w): no encoder, no AIS to turn to
        ("ais", "rerun AIS with more chains", None),  # the verdict does not know the steps: no exact request
        ("external", EXTERNAL_ADVICE, None),  # the client's own log-weights: logpx cannot rerun that model
    ],
)
def test_advice_and_rerun_follow_the_sampler(sampler: str, advice: str, rerun: object) -> None:
    est = estimate(HEAVY, EstimatorSpec("iwae", 1000), sampler=sampler)  # type: ignore[arg-type]
    for verdict in est.verdicts:
        assert verdict.level == "unreliable"
        assert verdict.advice.startswith(advice) and verdict.rerun == rerun


def test_the_elbo_points_to_iwae_or_ais_and_a_reliable_estimate_to_nothing() -> None:
    elbo = estimate(HEAVY, EstimatorSpec("elbo", 1000))
    assert all(v.advice.endswith(AIS_ADVICE) and v.rerun == AIS_RERUN for v in elbo.verdicts)
    own = estimate(HEAVY, EstimatorSpec("elbo", 1000), sampler="external")
    assert all(v.advice.startswith("for log p(x) itself use iwae or jvi on the same") for v in own.verdicts)
    light = estimate(LIGHT, EstimatorSpec("iwae", 1000))
    assert all(v.level == "reliable" and v.advice == "" and v.rerun is None for v in light.verdicts)
