"""Which model is better on a data set: per-model means and the paired difference of two models scored on
the same inputs, with a verdict on the difference.

Scored on the same inputs, two models' log p(x) share most of their spread over inputs (an easy digit is
easy for both), so the standard error of the mean difference is the spread of the per-input differences
d_i = a_i - b_i over sqrt(n), not the two means' errors combined (``unpaired_se``, which overstates it).
Each d_i also carries the Monte Carlo error of both estimates; the spread of the d_i already holds it, and
``mc_se`` states that part on its own. The interval is Student's t with n - 1 degrees of freedom.

The verdict is on the difference as a number to report: an estimator whose own verdict is ``unreliable``
on an input (importance sampling with k-hat over its threshold: a lower bound off by an amount it cannot
state) makes the difference on that input a difference of two biased numbers, whose biases need not
cancel. So the difference is only as trustworthy as the worse side, input by input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..plan import Plan
from .verdict import Level, Verdict

__all__ = [
    "CONFIDENCE",
    "MC_SHARE",
    "UNRELIABLE_SHARE",
    "ModelScores",
    "ModelSummary",
    "PairedDifference",
    "paired_difference",
    "student_t_quantile",
    "summarize_model",
]

CONFIDENCE = 0.95
# A difference is judged by the inputs it is computed on: above this share of inputs with an unreliable
# estimate on either side, the difference is unreliable; any unreliable or caution input makes it caution.
UNRELIABLE_SHARE = 0.05
# The estimators' own Monte Carlo error should be a small part of the difference's standard error (the
# rest is the data's spread); above this share, more samples would change the answer: caution.
MC_SHARE = 0.5


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on erf (to 1e-12; no SciPy needed for one number)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_two_sided(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with an integer ``dof``: the finite series of Abramowitz and Stegun 26.7.3
    (odd dof) and 26.7.4 (even), exact up to rounding."""
    theta = math.atan(t / math.sqrt(dof))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(2, dof - 1, 2):  # cos^j theta * (1 3 ... (j - 1)) / (2 4 ... j)
            term *= c2 * (j - 1) / j
            total += term
        return s * total
    if dof == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for j in range(3, dof - 1, 2):  # cos^j theta * (2 4 ... (j - 1)) / (1 3 ... j)
        term *= c2 * (j - 1) / j
        total += term
    return 2 / math.pi * (theta + s * total)


EXACT_DOF = 30  # up to here by the exact series; beyond, the expansion is within 1e-7


def student_t_quantile(p: float, dof: int) -> float:
    """Student's t quantile at ``p`` (in (0.5, 1)) with ``dof`` degrees of freedom: up to ``EXACT_DOF`` by
    bisection on the exact distribution function, beyond by the Cornish-Fisher expansion in 1/dof
    (Abramowitz and Stegun 26.7.5). Tests check both against mpmath."""
    if dof < 1:
        raise ValueError("Student's t needs at least one degree of freedom")
    if not 0.5 < p < 1:
        raise ValueError("the quantile of an upper tail: p in (0.5, 1)")
    if dof <= EXACT_DOF:
        lo, hi = 0.0, 1.0
        while (1 + _t_two_sided(hi, dof)) / 2 < p:
            hi *= 2
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (1 + _t_two_sided(mid, dof)) / 2 < p else (lo, mid)
        return (lo + hi) / 2
    z = _normal_quantile(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


@dataclass(frozen=True)
class ModelScores:
    """One model's estimate on each input: ``log_px`` (NaN where it failed or is impossible), its
    ``std_err``, the verdict ``levels``, and the advice of its verdicts as a plan (None: none named one)."""

    name: str
    log_px: np.ndarray
    std_err: np.ndarray
    levels: Sequence[str]
    rerun: Plan | None = None


@dataclass(frozen=True)
class ModelSummary:
    name: str
    count: int  # inputs with a finite estimate
    mean: float
    se: float  # over inputs: sd / sqrt(count)
    mc_se: float  # the Monte Carlo part: sqrt(sum of squared per-input std errors) / count
    levels: dict[str, int]


@dataclass(frozen=True)
class PairedDifference:
    a: str
    b: str
    count: int  # inputs with a finite estimate on both sides
    mean: float  # mean of a_i - b_i
    se: float  # sd(d) / sqrt(count): the data's spread and both sides' Monte Carlo error
    mc_se: float  # the Monte Carlo part alone
    unpaired_se: float  # what the two means' own errors would say: sqrt(se_a^2 + se_b^2), on the same inputs
    interval: tuple[float, float]  # CONFIDENCE interval, Student's t with count - 1 degrees of freedom
    a_better: float  # share of inputs on which a's estimate is the higher
    verdict: Verdict


def summarize_model(scores: ModelScores) -> ModelSummary:
    finite = np.isfinite(scores.log_px)
    values, errs = scores.log_px[finite], scores.std_err[finite]
    n = int(finite.sum())
    counts = {level.value: 0 for level in Level}
    for level in scores.levels:
        counts[Level(level).value] += 1
    return ModelSummary(
        name=scores.name,
        count=n,
        mean=float(values.mean()) if n else math.nan,
        se=float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        mc_se=float(math.sqrt(float(np.nansum(errs**2))) / n) if n else math.nan,
        levels=counts,
    )


def paired_difference(a: ModelScores, b: ModelScores) -> PairedDifference:
    """The mean of a - b over the inputs both scored, with its errors, interval and verdict."""
    if a.log_px.shape != b.log_px.shape:
        raise ValueError(
            f"{a.name} and {b.name} were scored on different inputs ({a.log_px.shape} vs {b.log_px.shape})"
        )
    both = np.isfinite(a.log_px) & np.isfinite(b.log_px)
    n = int(both.sum())
    d = a.log_px[both] - b.log_px[both]
    if n < 2:
        nan = math.nan
        verdict = Verdict(
            Level.UNRELIABLE, (f"{n} inputs scored by both models: too few for a difference",), "score more inputs"
        )
        return PairedDifference(
            a.name, b.name, n, float(d.mean()) if n else nan, nan, nan, nan, (nan, nan), nan, verdict
        )
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    mc_se = float(math.sqrt(float(np.nansum(a.std_err[both] ** 2 + b.std_err[both] ** 2))) / n)
    unpaired = math.sqrt(float(a.log_px[both].var(ddof=1) + b.log_px[both].var(ddof=1)) / n)
    half = student_t_quantile(0.5 + CONFIDENCE / 2, n - 1) * se
    levels_a = [Level(v) for v, keep in zip(a.levels, both, strict=True) if keep]
    levels_b = [Level(v) for v, keep in zip(b.levels, both, strict=True) if keep]
    verdict = _judge(a, b, mean, se, mc_se, (mean - half, mean + half), levels_a, levels_b)
    return PairedDifference(
        a=a.name,
        b=b.name,
        count=n,
        mean=mean,
        se=se,
        mc_se=mc_se,
        unpaired_se=unpaired,
        interval=(mean - half, mean + half),
        a_better=float((d > 0).mean()),
        verdict=verdict,
    )


def _judge(
    a: ModelScores,
    b: ModelScores,
    mean: float,
    se: float,
    mc_se: float,
    interval: tuple[float, float],
    levels_a: list[Level],
    levels_b: list[Level],
) -> Verdict:
    n = len(levels_a)
    worst = [Level.worst((x, y)) for x, y in zip(levels_a, levels_b, strict=True)]
    unreliable = sum(level is Level.UNRELIABLE for level in worst) / n
    caution = sum(level is Level.CAUTION for level in worst) / n
    separated = interval[0] > 0 or interval[1] < 0
    sign = f"{a.name} - {b.name} = {mean:+.3f} +- {se:.3f} nats"
    reasons = [
        f"{sign}, {100 * CONFIDENCE:.0f}% interval [{interval[0]:+.3f}, {interval[1]:+.3f}]: "
        + ("the data separate the two models" if separated else "the interval holds 0: the data do not separate them")
    ]
    rerun = a.rerun or b.rerun
    if unreliable > UNRELIABLE_SHARE:
        reasons.append(
            f"{100 * unreliable:.0f}% of inputs have an unreliable estimate on one side or both: each is a bound off by "
            "an amount its estimator cannot state, and the two models' offsets need not cancel"
        )
        advice = (
            f"score both models with {rerun} on the same inputs (a comparison of that plan) before reporting the difference"
            if rerun is not None
            else "score both models with an estimator whose verdicts are reliable on these inputs (AIS) before reporting the difference"
        )
        return Verdict(Level.UNRELIABLE, tuple(reasons), advice, rerun)
    level = Level.RELIABLE
    if unreliable > 0 or caution > UNRELIABLE_SHARE:
        level = Level.CAUTION
        reasons.append(
            f"{100 * (unreliable + caution):.0f}% of inputs have an estimate at caution or worse on one side"
        )
    if se > 0 and mc_se > MC_SHARE * se:
        level = Level.CAUTION
        reasons.append(
            f"the estimators' own Monte Carlo error ({mc_se:.3f}) is over {MC_SHARE:.0%} of the difference's standard "
            "error: more samples per input would move it"
        )
    advice = "" if level is Level.RELIABLE else "raise k (or the AIS chains) and score again"
    return Verdict(level, tuple(reasons), advice, None)
