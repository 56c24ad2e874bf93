"""The advice a verdict gives depends on what drew the log-weights: each sampler gets advice it can act on."""

from __future__ import annotations

import pytest
import torch

from logpx import EstimatorSpec, estimate
from logpx.estimators.verdict import AIS_ADVICE, AIS_RERUN, EXTERNAL_ADVICE, WEIGHT_DRAWS_ADVICE, Level
from logpx.plan import AIS, IMPORTANCE, External, Plan, Sampler, WeightDraws

# Log-normal weights with sigma = 3: the weights' tail is far heavier than k-hat 0.7 allows at any k used here
# (seeded, so the verdict is fixed; the assertion on the level below says it).
HEAVY = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
LIGHT = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1


@pytest.mark.parametrize(
    ("sampler", "advice", "rerun"),
    [
        (IMPORTANCE, AIS_ADVICE, AIS_RERUN),
        (WeightDraws(), WEIGHT_DRAWS_ADVICE, None),  # a classifier's draws from q(w): no encoder, no AIS to turn to
        # AIS that is unreliable with enough chains: the same chains on a schedule 4x as long, as a plan.
        (AIS(steps=500, leapfrog=5), "rerun AIS as iwae:1000@ais:2000:5", Plan.parse("iwae:1000@ais:2000:5")),
        (External(), EXTERNAL_ADVICE, None),  # the client's own log-weights: logpx cannot rerun that model
    ],
)
def test_advice_and_rerun_follow_the_sampler(sampler: Sampler, advice: str, rerun: object) -> None:
    est = estimate(HEAVY, EstimatorSpec("iwae", 1000), sampler=sampler)
    for verdict in est.verdicts:
        assert verdict.level == "unreliable"
        assert verdict.advice.startswith(advice) and verdict.rerun == rerun
        assert "POST" not in verdict.advice and "{name}" not in verdict.advice  # the core knows no HTTP


def test_ais_with_too_few_chains_is_advised_more_chains_on_the_same_schedule() -> None:
    est = estimate(HEAVY[:32], EstimatorSpec("iwae", 32), sampler=AIS(steps=300))
    assert all(v.rerun == Plan.parse("iwae:100@ais:300") for v in est.verdicts)


def test_levels_are_ordered() -> None:
    assert Level.worst(["caution", "reliable"]) is Level.CAUTION
    assert Level.worst([]) is Level.RELIABLE
    assert Level.worst(["caution", "unreliable", "reliable"]) is Level.UNRELIABLE
    assert sorted(Level, key=lambda level: level.rank) == [Level.RELIABLE, Level.CAUTION, Level.UNRELIABLE]


def test_the_elbo_points_to_iwae_or_ais_and_a_reliable_estimate_to_nothing() -> None:
    elbo = estimate(HEAVY, EstimatorSpec("elbo", 1000))
    assert all(v.advice.endswith(AIS_ADVICE) and v.rerun == AIS_RERUN for v in elbo.verdicts)
    own = estimate(HEAVY, EstimatorSpec("elbo", 1000), sampler=External())
    assert all(v.advice.startswith("for log p(x) itself use iwae or jvi on the same") for v in own.verdicts)
    light = estimate(LIGHT, EstimatorSpec("iwae", 1000))
    assert all(v.level == "reliable" and v.advice == "" and v.rerun is None for v in light.verdicts)
