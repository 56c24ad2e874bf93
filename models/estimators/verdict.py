"""A verdict on every estimate: ``reliable``, ``caution`` or ``unreliable``, the reasons, and what to run
instead. Pure functions of an estimate and its diagnostics; every threshold lives here, with its source
(docs/estimators.md states them too).
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, NamedTuple

import torch

from .diagnostics import Diagnostics
from .psis import khat_threshold

__all__ = [
    "ACCEPTANCE_RANGE",
    "AIS_ADVICE",
    "AIS_RERUN",
    "EXTERNAL_ADVICE",
    "KHAT_GOOD",
    "MIN_AIS_CHAINS",
    "MIN_ESS",
    "MIN_KHAT_DRAWS",
    "WEIGHT_DRAWS_ADVICE",
    "Level",
    "Rerun",
    "SamplerKind",
    "SamplerStats",
    "Verdict",
    "judge",
]

Level = Literal["reliable", "caution", "unreliable"]
# What drew the log-weights: importance sampling, AIS, a Bayesian classifier's weight draws from q(w), or
# the client's own sampler (log-weights sent to POST /v1/estimate: logpx cannot rerun that model).
SamplerKind = Literal["importance", "ais", "weights", "external"]

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


class Rerun(NamedTuple):
    """What to run instead, as a request's ``estimator`` and ``sampler`` objects (the HTTP API's), so that a
    client can send it, or show it in its own terms (the CLI as flags)."""

    estimator: dict[str, Any]
    sampler: dict[str, Any]


# What to run when importance sampling cannot be trusted: encoder-initialised AIS (Wu et al. 2017), with
# enough chains for k-hat to judge its weights. "{name}" is the model's, filled in by whoever knows it.
AIS_RERUN = Rerun(
    estimator={"name": "iwae", "k": MIN_AIS_CHAINS},
    sampler={"name": "ais", "steps": 1000, "leapfrog": 10, "init": "encoder"},
)
AIS_ADVICE = (
    f'run AIS instead: "sampler": {json.dumps(AIS_RERUN.sampler)} with "estimator": {json.dumps(AIS_RERUN.estimator)} '
    f"({MIN_AIS_CHAINS} chains); certify its setting with POST /v1/models/{{name}}/bdmc"
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
    """What the sampler reports per input (``[B]`` each), for the verdict; AIS only."""

    acceptance: torch.Tensor
    step_size: torch.Tensor


class Verdict(NamedTuple):
    level: Level
    reasons: tuple[str, ...]
    advice: str
    rerun: Rerun | None = None  # the advice as request settings, where it names them exactly


_ORDER = {"reliable": 0, "caution": 1, "unreliable": 2}


def judge(
    estimator: str,
    k: int,
    log_px: torch.Tensor,
    std_err: torch.Tensor,
    diagnostics: Diagnostics,
    *,
    discrete: bool,
    sampler: SamplerKind = "importance",
    stats: SamplerStats | None = None,
) -> list[Verdict]:
    """One ``Verdict`` per input of an estimate.

    Parameters
    ----------
    estimator : ``elbo``, ``iwae`` or ``jvi``; ``k``: the samples (or AIS chains) it used.
    log_px, std_err : ``[B]`` the estimate and its standard error.
    diagnostics : the estimate's ``Diagnostics`` (each ``[B]``).
    discrete : the likelihood is a probability mass (Bernoulli), so log p(x) > 0 is impossible.
    sampler : ``importance``, ``ais``, ``weights`` (a Bayesian classifier's draws from q(w)) or
        ``external`` (the client's own log-weights), for the advice; ``stats``: AIS acceptance and step size.
    """
    limit = khat_threshold(k)
    columns = {
        "log_px": log_px.tolist(),
        "std_err": std_err.tolist(),
        "khat": diagnostics.khat.tolist(),
        "ess": diagnostics.ess.tolist(),
        "acceptance": stats.acceptance.tolist() if stats is not None else [None] * log_px.shape[0],
    }
    out = []
    for value, se, khat, ess, acceptance in zip(*columns.values(), strict=True):
        found: list[tuple[Level, str]] = []
        if not math.isfinite(value) or not math.isfinite(se):
            found.append(
                ("unreliable", "the estimate or its standard error is not finite (the model's log-weights may be)")
            )
        elif discrete and value > 0:
            found.append(
                ("unreliable", f"log p(x) = {value:.3f} > 0 is impossible: the likelihood is a probability mass")
            )
        if estimator == "elbo":
            found.append(
                ("caution", "the ELBO is a lower bound whose gap (the KL to the posterior) does not shrink with k")
            )
        if sampler == "ais" and k < MIN_AIS_CHAINS:
            found.append(
                ("caution", f"{k} AIS chains are too few for k-hat to judge their weights (it needs {MIN_AIS_CHAINS})")
            )
        elif k < MIN_KHAT_DRAWS:
            found.append(
                ("caution", f"k-hat needs at least {MIN_KHAT_DRAWS} weights, got k = {k}: the weight tail is unchecked")
            )
        elif math.isfinite(khat) and khat > limit:
            found.append(("unreliable", f"k-hat = {khat:.2f} is over {limit:.2f}, the PSIS threshold at k = {k}"))
        elif math.isfinite(khat) and khat > KHAT_GOOD:
            found.append(("caution", f"k-hat = {khat:.2f} is over {KHAT_GOOD}: the weights' variance may be infinite"))
        if math.isfinite(ess) and ess < MIN_ESS:
            found.append(("caution", f"effective sample size {ess:.1f} is under {MIN_ESS:g}"))
        if acceptance is not None and not ACCEPTANCE_RANGE[0] <= acceptance <= ACCEPTANCE_RANGE[1]:
            found.append(("caution", f"HMC acceptance {acceptance:.2f} is outside {list(ACCEPTANCE_RANGE)}"))
        level: Level = max((lv for lv, _ in found), key=_ORDER.__getitem__, default="reliable")
        out.append(Verdict(level, tuple(r for _, r in found), *_advice(level, sampler, estimator)))
    return out


def _advice(level: Level, sampler: SamplerKind, estimator: str) -> tuple[str, Rerun | None]:
    if level == "reliable":
        return "", None
    if sampler == "ais":  # the verdict does not know the steps: more of them has no exact request to name
        return (
            f"rerun AIS with more chains (at least {MIN_AIS_CHAINS}) or more steps (4x), and check the setting's gap "
            "with POST /v1/models/{name}/bdmc"
        ), None
    if sampler == "weights":
        return WEIGHT_DRAWS_ADVICE, None
    if sampler == "external":
        if estimator == "elbo":
            return "for log p(x) itself use iwae or jvi on the same log-weights; if those are unreliable too, " + (
                EXTERNAL_ADVICE
            ), None
        return EXTERNAL_ADVICE, None
    if estimator == "elbo":
        return "for log p(x) itself use iwae with a large k, or " + AIS_ADVICE, AIS_RERUN
    return AIS_ADVICE, AIS_RERUN
