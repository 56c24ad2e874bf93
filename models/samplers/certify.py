"""Certified AIS settings: the cheapest schedule whose BDMC gap on data simulated from the model is below a
tolerance, with stated confidence; and ``resolve``, which replaces ``ais:auto`` in a plan by that setting.

Why the gap certifies (Grosse et al. 2015, 2016; Wu et al. 2017): on an input simulated from the model,
forward AIS with c chains is a stochastic lower bound and reverse AIS from the exact posterior sample a
stochastic upper bound, so the mean gap upper - lower over such inputs bounds the mean bias of the c-chain
estimate; more chains only shrink it (the IWAE bound rises with k, Burda et al. 2016, Theorem 1).

The search (``certify``): one set of simulated inputs for every trial (common random numbers, so that
trials differ by their schedules, not their data), steps doubled from ``START_STEPS`` until the gap's upper
confidence bound ``mean + z sd / sqrt(n)`` is under the tolerance, then one refinement at the geometric mean
of the last failing and the first passing step counts. The gap falls about as 1/T (the variance of the
log-weights does, Neal 2001, section 4), so doubling overshoots the fewest steps by at most 2x and the
refinement, at 0.7x the last trial's cost, cuts that to 1.4x for every estimate that reuses the certificate.
Its standard error is over inputs (``sd(gap_i) / sqrt(n)``): it holds both the Monte Carlo noise of each
gap and how the gap varies across the model's data.

Every random number comes from ``seed``: the simulated inputs from one stream, each trial from a stream of its
own keyed by its steps (``stream_seed``). A trial is therefore a function of (checkpoint, setting, chains, inputs,
seed) alone, which is what a ``Certificate`` records: a search given earlier trials (``reuse``: one stopped with
its server, or one at another tolerance) takes them as they stand and ends where an uninterrupted search would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch

from ..certificate import Certificate
from ..estimators import log_mean_exp
from ..families import LatentVariableModel, model_device
from ..plan import AIS, AISInit, AISSchedule
from ..runtime import CheckFn
from .ais import ais, reverse_ais, tune
from .bdmc import simulate
from .seeds import stream_seed

__all__ = [
    "CERTIFY_CHAINS",
    "CERTIFY_INPUTS",
    "MAX_STEPS",
    "START_STEPS",
    "Certification",
    "certify",
    "certify_evaluations",
]

SIMULATION, TRIAL = 0, 1  # the streams of a certification's seed: its simulated inputs, and trial (TRIAL, steps)
START_STEPS = 50
MAX_STEPS = 12_800  # 50 doubled 8 times
CERTIFY_INPUTS = 16  # simulated inputs: the bound's standard error falls as 1/sqrt(n)
CERTIFY_CHAINS = 16  # chains each way: a certificate covers requests with at least this many


class Certification(NamedTuple):
    """What ``certify`` found: every trial in the order run, and the cheapest one that meets ``tolerance``
    (``None`` when none up to ``MAX_STEPS`` does)."""

    tolerance: float
    chosen: Certificate | None
    trials: tuple[Certificate, ...]


def certify_evaluations(setting: AIS, inputs: int = CERTIFY_INPUTS, chains: int = CERTIFY_CHAINS) -> int:
    """Gradient evaluations of one trial: BDMC's tuning, forward and reverse chains on every input."""
    return inputs * setting.bdmc_evaluations(chains)


def _trial(
    model: LatentVariableModel,
    x: torch.Tensor,
    z: torch.Tensor,
    setting: AIS,
    chains: int,
    generator: torch.Generator,
    check_fn: CheckFn | None,
    max_elements: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: the BDMC gap ``[n]`` and the forward log-weights' variance ``[n]``."""
    steps = tune(model, x, setting, generator, check_fn, estimating=2 * chains)  # both directions
    kw: dict[str, Any] = {"step_sizes": steps, "max_elements": max_elements, "check_fn": check_fn}
    forward = ais(model, x, chains, setting, generator, **kw)
    reverse = reverse_ais(model, x, z, chains, setting, generator, **kw)
    gap = -log_mean_exp(-reverse.log_w, dim=0) - log_mean_exp(forward.log_w, dim=0)
    return gap, forward.log_w.var(dim=0)


def certify(
    model: LatentVariableModel,
    tolerance: float,
    *,
    seed: int = 0,
    leapfrog: int = 10,
    init: AISInit = "encoder",
    schedule: AISSchedule = "sigmoid",
    inputs: int = CERTIFY_INPUTS,
    chains: int = CERTIFY_CHAINS,
    checkpoint: str = "",
    max_steps: int = MAX_STEPS,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
    on_trial: Callable[[Certificate], None] | None = None,
    reuse: Iterable[Certificate] = (),
) -> Certification:
    """The cheapest AIS schedule (``leapfrog``, ``init``, ``schedule`` fixed; steps searched) whose mean
    BDMC gap on ``inputs`` inputs simulated from ``model`` (file ``checkpoint``) is below ``tolerance`` nats at
    ``CONFIDENCE``, every draw from ``seed``. A certificate in ``reuse`` of the same file, seed, inputs and chains
    stands for its trial (nothing runs). ``on_trial`` sees each trial as it is done, reused or run (progress,
    storage); ``check_fn`` may stop the search."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number of nats, got {tolerance}")
    if inputs < 2 or chains < 2:
        raise ValueError(f"certification needs at least 2 inputs and 2 chains, got {inputs} and {chains}")
    device = model_device(model)

    def stream(*keys: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(stream_seed(seed, *keys))

    done = {
        c.setting: c for c in reuse if (c.checkpoint, c.seed, c.inputs, c.chains) == (checkpoint, seed, inputs, chains)
    }
    with torch.no_grad():
        x, z = simulate(model, inputs, stream(SIMULATION))
    trials: list[Certificate] = []

    def run(steps: int) -> Certificate:
        setting = AIS(steps=steps, leapfrog=leapfrog, init=init, schedule=schedule)
        if setting in done:
            trials.append(done[setting])
            if on_trial is not None:
                on_trial(done[setting])
            return done[setting]
        started = time.monotonic()
        with torch.no_grad():
            gap, log_w_var = _trial(model, x, z, setting, chains, stream(TRIAL, steps), check_fn, max_elements)
        gap, log_w_var = gap.double().cpu(), log_w_var.double().cpu()
        cert = Certificate(
            setting=setting,
            checkpoint=checkpoint,
            chains=chains,
            inputs=inputs,
            mean_gap=float(gap.mean()),
            gap_std_err=float(gap.std() / math.sqrt(inputs)),
            log_w_var=float(log_w_var.mean()),
            seed=seed,
            seconds=time.monotonic() - started,
            created=time.time(),
        )
        trials.append(cert)
        if on_trial is not None:
            on_trial(cert)
        return cert

    steps, failed = START_STEPS, 0
    passed: Certificate | None = None
    while steps <= max_steps:
        trial = run(steps)
        if trial.meets(tolerance):
            passed = trial
            break
        failed, steps = steps, 2 * steps
    if passed is not None and failed:
        middle = round(math.sqrt(failed * steps))
        if failed < middle < steps:
            trial = run(middle)
            passed = trial if trial.meets(tolerance) else passed
    return Certification(tolerance, passed, tuple(trials))
