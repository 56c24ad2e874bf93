"""The Plan: one text grammar parsed and printed by the same code, one cost model, and ``run_plan``, the
spine every door runs (common random numbers, a bad input failing alone)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from logpx.estimators import estimate
from logpx.plan import AIS, AIS_TUNE_CHAINS, Entry, EstimatorSpec, Importance, Plan, parse_sampler
from logpx.samplers import run_plan

from ..helpers import poor_encoder_model

specs = st.one_of(
    st.builds(EstimatorSpec, st.sampled_from(["elbo", "iwae"]), st.integers(1, 10**6)),
    st.integers(3, 2000).flatmap(lambda k: st.builds(EstimatorSpec, st.just("jvi"), st.just(k), st.integers(1, 2))),
)
samplers = st.one_of(
    st.just(Importance()),
    st.builds(
        AIS,
        steps=st.integers(1, 10**5),
        leapfrog=st.integers(1, 100),
        init=st.sampled_from(["encoder", "prior"]),
        schedule=st.sampled_from(["sigmoid", "linear", "geometric"]),
    ),
)
plans = st.lists(st.builds(Entry, specs, samplers), min_size=1, max_size=6).map(lambda es: Plan(tuple(es)))


@given(plans)
def test_printing_and_parsing_are_inverses(plan: Plan) -> None:
    text = str(plan)
    assert Plan.parse(text) == plan  # parse(print(x)) == x
    assert str(Plan.parse(text)) == text  # print(parse(t)) == t on printed text
    assert Plan.parse(text.replace(" ", ",")) == plan  # a query string's commas read the same


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("iwae:1000", "iwae:1000"),
        ("jvi:1000", "jvi:1000:1"),  # order 1 by default, printed in full
        ("iwae:100@ais:1000:10", "iwae:100@ais:1000"),  # trailing defaults dropped
        ("iwae:100@ais:1000:10:prior", "iwae:100@ais:1000:10:prior"),
        ("elbo:5@importance", "elbo:5"),
    ],
)
def test_canonical_text(text: str, printed: str) -> None:
    assert str(Entry.parse(text)) == printed


@pytest.mark.parametrize(
    "text", ["iwae", "iwae:ten", "jvi:10:1:2", "iwae:10@", "iwae:10@mcmc", "iwae:10@ais:-5", "iwae:10@ais:1:2:sideways"]
)
def test_bad_text_is_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|unknown|sampler"):
        Entry.parse(text)


def test_one_cost_model() -> None:
    plan = Plan.parse("iwae:100 jvi:100:2 iwae:16@ais:200:5")
    cost = plan.cost(inputs=3, replicates=2)
    # The tuning chains count (the job chunker used to leave them out), over their own 100 temperatures here.
    ais = AIS_TUNE_CHAINS * (1 + 99 * 5) + 16 * (1 + 199 * 5)
    assert cost.gradient_evals == 3 * 2 * ais
    assert cost.evaluations == 3 * 2 * (100 + ais)  # importance entries share one draw of the largest k
    assert cost.samples == 3 * 2 * 100
    assert cost.jackknife == 3 * 2 * (100 * 99 // 2)
    assert parse_sampler("ais:10").evaluations(4) == (4 + AIS_TUNE_CHAINS) * (1 + 9 * 10)


def test_run_plan_uses_common_random_numbers_and_a_bad_input_fails_alone() -> None:
    model = poor_encoder_model()
    x = torch.rand(3, model.input_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plan = Plan.parse("iwae:20 iwae:200 elbo:200")
    small, large, elbo = run_plan(model, x, plan, torch.Generator().manual_seed(1))
    # The same seed, one draw: iwae:20 is the first 20 of the 200 that iwae:200 and the ELBO used.
    alone = run_plan(model, x, Plan.parse("iwae:200"), torch.Generator().manual_seed(1))[0]
    assert torch.equal(alone.estimate.log_px, large.estimate.log_px)
    log_w = model.log_weights(x, 200, torch.Generator().manual_seed(1)).double()
    assert torch.equal(small.estimate.log_px, estimate(log_w[:20], EstimatorSpec("iwae", 20)).log_px)
    assert torch.allclose(elbo.estimate.log_px, log_w.mean(0))
    exact = model.exact_log_px(x)
    assert bool((large.estimate.log_px - exact).abs().max() < 4 * large.estimate.std_err.max() + 1e-6)
    # An input the model cannot score (NaN) fails alone, with its reason; the others are untouched.
    broken = x.clone()
    broken[1, 0] = math.nan
    outcome = run_plan(model, broken, Plan.parse("iwae:200"), torch.Generator().manual_seed(1))[0]
    assert math.isnan(float(outcome.estimate.log_px[1])) and outcome.estimate.verdicts[1].level == "unreliable"
    assert "not finite" in outcome.estimate.verdicts[1].reasons[0]
    assert torch.equal(outcome.estimate.log_px[[0, 2]], large.estimate.log_px[[0, 2]])


def test_the_api_objects_round_trip_through_the_client_helpers() -> None:
    """What a response echoes (every sampler setting, null where it does not apply) reads back as the entry."""
    from logpx.client import entry_from_request, estimator_request

    echo = {"name": "iwae", "k": 50, "order": None, "sampler": {"name": "importance", "steps": None, "init": None}}
    assert str(entry_from_request(echo)) == "iwae:50"
    for text in ("jvi:100:2", "iwae:100@ais:1000:5:prior"):
        assert str(entry_from_request(estimator_request(text))) == text
