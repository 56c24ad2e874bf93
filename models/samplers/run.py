"""``run_plan``: the one spine from a model, inputs and a ``Plan`` to judged estimates. The service's
requests and jobs, ``logpx evaluate``, training's held-out bounds and the benchmarks all run it.

Each distinct sampler of the plan draws once, as many log-weights as its largest estimator needs; every
estimator on that sampler takes the first k of them (common random numbers), in float64, and is judged.
An input whose log-weights are not finite fails alone: its estimate is NaN with an ``unreliable``
verdict, and the rest of the batch is unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..certificate import Certificate, certificate_for
from ..estimators import Estimate, SamplerStats, estimate
from ..families import LatentVariableModel
from ..plan import Entry, Plan
from ..runtime import CheckFn
from .draw import Draw, draw

__all__ = ["Outcome", "estimate_entry", "run_plan"]


class Outcome(NamedTuple):
    """One entry of a plan on a batch: its ``estimate`` (values, errors, diagnostics, verdicts) and the
    sampler's per-input ``stats`` (AIS acceptance and step size; None for importance sampling)."""

    entry: Entry
    estimate: Estimate
    stats: SamplerStats | None


def estimate_entry(
    entry: Entry, log_w: torch.Tensor, *, discrete: bool, stats: SamplerStats | None, check_fn: CheckFn | None
) -> Outcome:
    """The entry's estimator on the first k rows of ``log_w`` (a draw of its sampler), judged."""
    est = estimate(
        log_w[: entry.spec.k].double(),  # the model runs in float32; nothing is lost after it
        entry.spec,
        discrete=discrete,
        sampler=entry.sampler,
        stats=stats,
        flag_nonfinite=True,
        check_fn=check_fn,
    )
    return Outcome(entry, est, stats)


def run_plan(
    model: LatentVariableModel,
    x: torch.Tensor,
    plan: Plan,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check: CheckFn | None = None,
    certificates: Sequence[Certificate] = (),
) -> list[Outcome]:
    """Every entry of ``plan`` on ``x`` ``[B, input_dim]`` (on the model's device), in the plan's order.
    Samplers draw in the order they first appear, from ``generator``: the same generator state gives the
    same outcomes. Runs without autograd (AIS enables it inside, for its gradients only). ``certificates``:
    the model's (``logpx.samplers.certify``); the one that covers an AIS entry goes to its verdict."""
    draws: dict[object, Draw] = {}
    with torch.no_grad():  # estimates are numbers, not graphs; AIS turns gradients on where it needs them
        for sampler, k in plan.draws().items():
            draws[sampler] = draw(sampler, model, x, k, generator, max_elements=max_elements, check_fn=check)
    outcomes = []
    for e in plan.entries:
        stats = draws[e.sampler].stats
        if stats is not None:
            stats = stats._replace(certificate=certificate_for(e.sampler, e.spec.k, certificates))
        outcomes.append(estimate_entry(e, draws[e.sampler].log_w, discrete=model.discrete, stats=stats, check_fn=check))
    return outcomes
