"""A verdict on every estimate: ``reliable``, ``caution`` or ``unreliable``, the reasons, and what to run
instead. Pure functions of an estimate and its diagnostics; every threshold lives here, with its source
(docs/estimators.md states them too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

import torch

from ..certificate import Certificate
from ..plan import AIS, IMPORTANCE, Entry, EstimatorSpec, External, Plan, Sampler, WeightDraws
from .diagnostics import Diagnostics
from .psis import khat_threshold

__all__ = [
    "ACCEPTANCE_RANGE",
    "AIS_ADVICE",
    "AIS_RERUN",
    "CERTIFIED_GAP",
    "EXTERNAL_ADVICE",
    "KHAT_GOOD",
    "MIN_AIS_CHAINS",
    "MIN_ESS",
    "MIN_KHAT_DRAWS",
    "WEIGHT_DRAWS_ADVICE",
    "Level",
    "SamplerStats",
    "Verdict",
    "judge",
]


class Level(StrEnum):
    """How far to trust an estimate, ordered: ``Level.worst`` of several is the most severe."""

    RELIABLE = "reliable"
    CAUTION = "caution"
    UNRELIABLE = "unreliable"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def worst(cls, levels: Iterable[str]) -> Level:
        return max((cls(level) for level in levels), key=lambda level: level.rank, default=cls.RELIABLE)


_RANK = {Level.RELIABLE: 0, Level.CAUTION: 1, Level.UNRELIABLE: 2}

# Vehtari et al. (2024), section 3: k-hat < 0.5, the weights have finite variance and the estimate
# converges at the usual rate; above min(1 - 1/log10(S), 0.7) (``khat_threshold``) the estimate is
# unreliable at this sample size, whatever its standard error says.
KHAT_GOOD = 0.5
# Vehtari et al. (2024): the tail fit needs M = min(S/5, 3 sqrt(S)) >= 5 draws, so S >= 25.
MIN_KHAT_DRAWS = 25
# Below S = 100 the threshold min(1 - 1/log10(S), 0.7) falls under k-hat's own 0.5 line, and a tail of
# fewer than 20 points judges little: AIS chains, each costly, are judged by k-hat only from 100 up.
MIN_AIS_CHAINS = 100
# Fewer effective draws than this and the jackknife / delta-method errors rest on a handful of weights.
MIN_ESS = 10.0
# HMC acceptance in a sound range around the optimum of about 0.65 (Neal 2011, "MCMC using Hamiltonian
# dynamics", section 4.4; Beskos et al. 2013): below, the chains barely move between temperatures; at
# the very top, the step is so small that they hardly explore.
ACCEPTANCE_RANGE = (0.4, 0.95)
# A certificate (logpx.certificate) lets fewer than MIN_AIS_CHAINS chains be reliable when its BDMC gap's
# upper bound is within this many nats: the gap bounds the mean bias of the certified chain count on data
# simulated from the model, and more chains only shrink it (docs/estimators.md, "Certified AIS").
CERTIFIED_GAP = 0.1
# A longer schedule is the remedy for AIS weights whose tail is too heavy: the variance of log w falls
# roughly as 1/T (Neal 2001, section 4), so 4x the temperatures halves its spread.
AIS_LONGER = 4

# What to run when importance sampling cannot be trusted: encoder-initialised AIS (Wu et al. 2017), with
# enough chains for k-hat to judge their weights. Whoever presents the verdict renders it as a request
# or a command, and names the BDMC check of the setting in its own terms.
AIS_RERUN = Plan.of(EstimatorSpec("iwae", MIN_AIS_CHAINS), sampler=AIS(steps=1000, leapfrog=10, init="encoder"))
AIS_ADVICE = (
    f"run AIS instead: {AIS_RERUN} ({MIN_AIS_CHAINS} chains from the encoder, 1000 temperatures, 10 leapfrog "
    "steps), and certify that setting with BDMC on data simulated from the model"
)
# A Bayesian classifier's log p(y | x, D) is a Monte Carlo mean over weight draws from q(w): no encoder, no
# AIS. More draws shrink its error while k-hat is under 0.7; over it, the error has no bound at any k.
WEIGHT_DRAWS_ADVICE = (
    "raise k, the weight draws from q(w): the k-hat threshold rises with k to 0.70 at k = 10,000; with k-hat "
    "over 0.70 the value stays an underestimate whose error has no bound at any k"
)
# Log-weights from the client's own model: logpx can neither draw more nor anneal them.
EXTERNAL_ADVICE = (
    "draw the log-weights from a proposal closer to the posterior, or anneal (AIS, Neal 2001); logpx runs AIS "
    "and BDMC for a model it serves: bring yours with `logpx convert` (docs/checkpoints.md)"
)


class SamplerStats(NamedTuple):
    """What the sampler reports per input (``[B]`` each), for the verdict; AIS only. ``certificate``: the
    model's certificate of the setting that ran, if one covers it."""

    acceptance: torch.Tensor
    step_size: torch.Tensor
    certificate: Certificate | None = None


class Verdict(NamedTuple):
    level: Level
    reasons: tuple[str, ...]
    advice: str  # names no URL and no command: its presenter renders ``rerun`` in its own terms
    rerun: Plan | None = None  # the advice as a plan, where it names one exactly


def judge(
    spec: EstimatorSpec,
    log_px: torch.Tensor,
    std_err: torch.Tensor,
    diagnostics: Diagnostics,
    *,
    discrete: bool,
    sampler: Sampler = IMPORTANCE,
    stats: SamplerStats | None = None,
) -> list[Verdict]:
    """One ``Verdict`` per input of an estimate.

    Parameters
    ----------
    spec : the estimator that ran, with the samples (or AIS chains) it used.
    log_px, std_err : ``[B]`` the estimate and its standard error.
    diagnostics : the estimate's ``Diagnostics`` (each ``[B]``).
    discrete : the likelihood is a probability mass (Bernoulli), so log p(x) > 0 is impossible.
    sampler : what drew the log-weights (``Importance``, ``AIS``, ``WeightDraws`` for a Bayesian
        classifier's draws from q(w), ``External`` for the client's own), for the advice;
        ``stats``: AIS acceptance and step size.
    """
    k = spec.k
    annealed = isinstance(sampler, AIS)
    limit = khat_threshold(k)
    certificate = stats.certificate if stats is not None else None
    certified = certificate is not None and certificate.covers(sampler, k) and certificate.gap_bound <= CERTIFIED_GAP
    columns = {
        "log_px": log_px.tolist(),
        "std_err": std_err.tolist(),
        "khat": diagnostics.khat.tolist(),
        "ess": diagnostics.ess.tolist(),
        "acceptance": stats.acceptance.tolist() if stats is not None else [None] * log_px.shape[0],
        "log_w_var": diagnostics.log_weight_var.tolist(),
    }
    out = []
    for value, se, khat, ess, acceptance, log_w_var in zip(*columns.values(), strict=True):
        found: list[tuple[Level, str]] = []
        if not math.isfinite(value) or not math.isfinite(se):
            found.append(
                (Level.UNRELIABLE, "the estimate or its standard error is not finite (the model's log-weights may be)")
            )
        elif discrete and value > 0:
            found.append(
                (Level.UNRELIABLE, f"log p(x) = {value:.3f} > 0 is impossible: the likelihood is a probability mass")
            )
        if spec.name == "elbo":
            found.append(
                (Level.CAUTION, "the ELBO is a lower bound whose gap (the KL to the posterior) does not shrink with k")
            )
        if annealed and k < MIN_AIS_CHAINS and certified:
            assert certificate is not None
            # The certified gap bounds the bias on inputs like the simulated ones; an input whose log-weights
            # vary more than theirs did on average is not covered (docs/estimators.md, "Certified AIS").
            if not log_w_var <= certificate.log_w_var:
                found.append(
                    (
                        Level.CAUTION,
                        f"its AIS log-weights vary more (variance {log_w_var:.3g}) than on the simulated inputs of "
                        f"the setting's certificate ({certificate.log_w_var:.3g}): the certified gap may not hold here",
                    )
                )
        elif annealed and k < MIN_AIS_CHAINS:
            found.append(
                (
                    Level.CAUTION,
                    f"{k} AIS chains are too few for k-hat to judge their weights (it needs {MIN_AIS_CHAINS}), and no "
                    f"certificate of this setting with a gap under {CERTIFIED_GAP:g} nats covers {k} chains",
                )
            )
        elif k < MIN_KHAT_DRAWS:
            found.append(
                (
                    Level.CAUTION,
                    f"k-hat needs at least {MIN_KHAT_DRAWS} weights, got k = {k}: the weight tail is unchecked",
                )
            )
        elif math.isfinite(khat) and khat > limit:
            found.append((Level.UNRELIABLE, f"k-hat = {khat:.2f} is over {limit:.2f}, the PSIS threshold at k = {k}"))
        elif math.isfinite(khat) and khat > KHAT_GOOD:
            found.append(
                (Level.CAUTION, f"k-hat = {khat:.2f} is over {KHAT_GOOD}: the weights' variance may be infinite")
            )
        if math.isfinite(ess) and ess < MIN_ESS:
            found.append((Level.CAUTION, f"effective sample size {ess:.1f} is under {MIN_ESS:g}"))
        if acceptance is not None and not ACCEPTANCE_RANGE[0] <= acceptance <= ACCEPTANCE_RANGE[1]:
            found.append((Level.CAUTION, f"HMC acceptance {acceptance:.2f} is outside {list(ACCEPTANCE_RANGE)}"))
        level = Level.worst(lv for lv, _ in found)
        out.append(Verdict(level, tuple(r for _, r in found), *_advice(level, spec, sampler)))
    return out


def _advice(level: Level, spec: EstimatorSpec, sampler: Sampler) -> tuple[str, Plan | None]:
    if level == Level.RELIABLE:
        return "", None
    if isinstance(sampler, AIS):
        # More chains where k-hat could not judge them; else a longer schedule (the same chains).
        rerun = Plan.of(
            Entry(
                EstimatorSpec("iwae", max(spec.k, MIN_AIS_CHAINS)),
                sampler
                if spec.k < MIN_AIS_CHAINS
                else AIS(sampler.temperatures * AIS_LONGER, sampler.leapfrog, sampler.init, sampler.schedule),
            )
        )
        return (
            f"rerun AIS as {rerun} (at least {MIN_AIS_CHAINS} chains, and {AIS_LONGER}x the temperatures if k-hat "
            "stays high), and certify that setting with BDMC on data simulated from the model; or let a certificate "
            f"choose the schedule (steps auto, tolerance {CERTIFIED_GAP:g} nats), which also judges fewer chains"
        ), rerun
    if isinstance(sampler, WeightDraws):
        return WEIGHT_DRAWS_ADVICE, None
    if isinstance(sampler, External):
        if spec.name == "elbo":
            return "for log p(x) itself use iwae or jvi on the same log-weights; if those are unreliable too, " + (
                EXTERNAL_ADVICE
            ), None
        return EXTERNAL_ADVICE, None
    if spec.name == "elbo":
        return "for log p(x) itself use iwae with a large k, or " + AIS_ADVICE, AIS_RERUN
    return AIS_ADVICE, AIS_RERUN
