"""How long a plan will take on a model, before it runs: the plan's cost (``Plan.cost``) over the model's
measured speed. Advice uses it to say whether a request can finish within a deadline or should be a job,
and with what expected time.

Two rates, because an AIS gradient evaluation (forward and backward through the decoder, kept for the
gradient) costs several forward passes: forward evaluations per second (importance draws) and gradient
evaluations per second (annealed samplers). ``measure`` times both at the sizes the advice names (one
input, 100 chains, 10 leapfrog steps), after a warm-up, so per-call overheads are counted as they will be paid.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..families import LatentVariableModel
from ..plan import AIS, AIS_TUNE_CHAINS, Cost, Entry, Plan
from .ais import ais

__all__ = ["Speed", "duration", "fit_within", "measure"]

CHAINS = 100  # the chains AIS advice names (verdict.MIN_AIS_CHAINS): time the sampler at that size
DRAWS = 1000  # importance draws per input of a typical request


@dataclass(frozen=True)
class Speed:
    """Model evaluations per second on one device: forward passes and gradient evaluations."""

    forward_per_s: float
    gradient_per_s: float

    def seconds(self, cost: Cost) -> float:
        """The expected compute time of work of this ``cost``."""
        return (cost.evaluations - cost.gradient_evals) / self.forward_per_s + cost.gradient_evals / self.gradient_per_s


def duration(seconds: float) -> str:
    """A time for people: seconds under 100, minutes under two hours, else hours."""
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# Each rate is timed on growing probes, each run only if the rate so far says it takes under ``BUDGET_S``, so
# that a large model (a convolutional VAE of 17 million parameters) is measured in about a second, not minutes.
# The last AIS probe is ten temperatures of the advised leapfrog count: shorter runs (3 temperatures of 5 leapfrog
# steps) timed 1.38 times faster per evaluation than a 100-temperature run, this one within 6% of it (vae1-iwae50).
BUDGET_S = 0.6
DRAW_PROBES = (10, 100, DRAWS)
AIS_PROBES = (
    (AIS_TUNE_CHAINS, AIS(steps=1, leapfrog=1)),
    (CHAINS, AIS(steps=2, leapfrog=2)),
    (CHAINS, AIS(steps=10, leapfrog=10)),
)


def measure(model: LatentVariableModel, generator: torch.Generator) -> Speed:
    """Forward and gradient evaluations per second of ``model`` on one zero input on its device: importance
    draws up to ``DRAWS`` and AIS up to ``CHAINS`` chains of ten temperatures (about 0.5 s on a CPU for the
    shipped models; bounded by ``BUDGET_S`` a probe for larger ones)."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = torch.zeros(1, model.input_dim, device=device, dtype=dtype)

    def timed(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return max(time.perf_counter() - start, 1e-6)

    def rate(probes: list[tuple[int, Callable[[], object]]]) -> float:
        """Evaluations per second of the largest probe the budget allows (the first runs twice: its first
        run pays lazy initialisation)."""
        per_s = 0.0
        for i, (evaluations, run) in enumerate(probes):
            if i and evaluations / per_s > BUDGET_S:
                break
            if i == 0:
                run()
            per_s = evaluations / timed(run)
        return per_s

    with torch.no_grad():
        forward = rate([(n, lambda n=n: model.log_weights(x, n, generator)) for n in DRAW_PROBES])  # type: ignore[misc]
        gradient = rate(
            [(s.evaluations(c), lambda c=c, s=s: ais(model, x, c, s, generator)) for c, s in AIS_PROBES]  # type: ignore[misc]
        )
    return Speed(forward, gradient)


def fit_within(plan: Plan, speed: Speed, inputs: int, seconds: float) -> Plan | None:
    """The plan with its work halved (AIS temperatures first, then samples or chains, never below
    ``MIN_K``) until it is expected to finish within ``seconds`` on ``inputs``; None if nothing fits."""
    current = plan
    while speed.seconds(current.cost(inputs)) > seconds:
        smaller = _halved(current)
        if smaller is None:
            return None
        current = smaller
    return current


MIN_K = 2  # every estimator needs two samples for a standard error


def _halved(plan: Plan) -> Plan | None:
    entries = []
    changed = False
    for e in plan.entries:
        sampler, spec = e.sampler, e.spec
        if isinstance(sampler, AIS) and sampler.temperatures > 1:
            sampler = dataclasses.replace(sampler, steps=sampler.temperatures // 2)
        elif spec.k // 2 >= max(MIN_K, spec.order + 1):
            spec = dataclasses.replace(spec, k=spec.k // 2)
        else:
            entries.append(e)
            continue
        changed = True
        entries.append(Entry(spec, sampler))
    return Plan(tuple(entries)) if changed else None
