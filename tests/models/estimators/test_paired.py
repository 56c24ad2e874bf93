"""Paired model comparison: the difference's standard error is the spread of per-input differences, its
interval Student's t, and its verdict only as good as the worse side input by input."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from logpx.estimators.paired import (
    MC_SHARE,
    ModelScores,
    paired_difference,
    student_t_quantile,
    summarize_model,
)
from logpx.estimators.verdict import Level
from logpx.plan import Plan


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 29, 30, 31, 100, 5000])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_student_t_quantile_against_mpmath(dof: int, p: float) -> None:
    t = student_t_quantile(p, dof)
    cdf = 1 - mpmath.betainc(dof / 2, 0.5, 0, dof / (dof + t**2), regularized=True) / 2
    assert abs(float(cdf) - p) < 1e-8


def _scores(
    name: str, values: np.ndarray, se: float, levels: list[str] | None = None, rerun: Plan | None = None
) -> ModelScores:
    return ModelScores(name, values, np.full(values.shape, se), levels or ["reliable"] * len(values), rerun)


def test_paired_standard_error_is_the_spread_of_differences_not_of_the_means() -> None:
    rng = np.random.default_rng(0)
    shared = rng.normal(-90, 8, 400)  # how hard each input is: most of the spread, common to both models
    a, b = shared + rng.normal(0.5, 0.3, 400), shared + rng.normal(0.0, 0.3, 400)
    diff = paired_difference(_scores("a", a, 0.01), _scores("b", b, 0.01))
    d = a - b
    assert diff.mean == pytest.approx(d.mean()) and diff.se == pytest.approx(d.std(ddof=1) / math.sqrt(400))
    assert diff.unpaired_se == pytest.approx(math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 400))
    assert diff.unpaired_se > 10 * diff.se  # the shared spread cancels in the pairs
    half = student_t_quantile(0.975, 399) * diff.se
    assert diff.interval == pytest.approx((d.mean() - half, d.mean() + half))
    assert diff.a_better == pytest.approx((d > 0).mean()) and diff.count == 400
    assert diff.mc_se == pytest.approx(math.sqrt(400 * 2 * 0.01**2) / 400)
    assert diff.verdict.level is Level.RELIABLE and "the data separate the two models" in diff.verdict.reasons[0]
    summary = summarize_model(_scores("a", a, 0.01))
    assert summary.mean == pytest.approx(a.mean()) and summary.levels == {
        "reliable": 400,
        "caution": 0,
        "unreliable": 0,
    }


def test_unreliable_inputs_make_the_difference_unreliable_with_the_plan_that_fixes_it() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(-90, 1, 100), rng.normal(-91, 1, 100)
    rerun = Plan.parse("iwae:100@ais:1000")
    levels = ["unreliable"] * 6 + ["reliable"] * 94  # 6% of inputs, on one side only
    diff = paired_difference(_scores("a", a, 0.01, levels, rerun), _scores("b", b, 0.01))
    assert diff.verdict.level is Level.UNRELIABLE and diff.verdict.rerun == rerun
    assert "iwae:100@ais:1000" in diff.verdict.advice and "6% of inputs" in diff.verdict.reasons[1]
    # Fewer than the share: caution, not unreliable.
    levels = ["unreliable"] * 2 + ["reliable"] * 98
    assert paired_difference(_scores("a", a, 0.01, levels), _scores("b", b, 0.01)).verdict.level is Level.CAUTION


def test_monte_carlo_error_that_dominates_is_caution_and_failed_inputs_are_left_out() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(-90, 0.1, 50)
    b = a - 0.2 + rng.normal(0, 0.1, 50)
    diff = paired_difference(_scores("a", a, 1.0), _scores("b", b, 1.0))  # each estimate +- 1 nat
    assert diff.mc_se > MC_SHARE * diff.se and diff.verdict.level is Level.CAUTION
    a[3] = math.nan  # an input that failed on one side is in neither side's pairs
    assert paired_difference(_scores("a", a, 0.0), _scores("b", b, 0.0)).count == 49
    with pytest.raises(ValueError, match="different inputs"):
        paired_difference(_scores("a", a, 0.0), _scores("b", b[:10], 0.0))
