"""The configurable limits, checked once per request or job against the plan's one cost model
(``Plan.cost``) before any work starts: 413 for sizes over a budget, 422 for values over their bound.
Every error names the field the client sent (``estimator.k``, ``estimators[2].sampler.steps``, ``k``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from logpx.plan import AIS, Cost, Entry, Plan

from .config import Settings
from .errors import InvalidInput, PayloadTooLarge

__all__ = ["bounded", "check_bdmc", "check_plan", "require_fixed"]


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_plan(
    settings: Settings,
    plan: Plan,
    inputs: int,
    fields: Sequence[str],
    *,
    replicates: int = 1,
    inputs_field: str = "inputs",
    sampler_fields: Sequence[str] | None = None,
) -> Cost:
    """``plan`` on ``inputs`` x ``replicates`` within every limit; ``fields[i]`` is where entry i came
    from (``""`` where k and order are top-level fields), ``sampler_fields[i]`` where its sampler did
    (default ``fields[i].sampler``). Returns the cost that was checked."""
    samplers = (
        list(sampler_fields) if sampler_fields is not None else [_at(f, "sampler") if f else "sampler" for f in fields]
    )
    require_fixed(plan, samplers)
    if inputs > settings.max_batch:
        raise PayloadTooLarge(
            f"{inputs} inputs, at most {settings.max_batch}", field=inputs_field, limit=settings.max_batch
        )
    for field, sampler_field, entry in zip(fields, samplers, plan.entries, strict=True):
        spec, sampler = entry.spec, entry.sampler
        if spec.k > settings.max_k:
            raise InvalidInput(
                f"k={spec.k} is over the limit {settings.max_k}", field=_at(field, "k"), limit=settings.max_k
            )
        if spec.is_jackknife and spec.order > settings.max_order:
            raise InvalidInput(
                f"order={spec.order} is over the limit {settings.max_order}",
                field=_at(field, "order"),
                limit=settings.max_order,
            )
        if isinstance(sampler, AIS) and sampler.temperatures > settings.max_ais_steps:
            raise InvalidInput(
                f"steps={sampler.temperatures} is over the limit {settings.max_ais_steps}",
                field=_at(sampler_field, "steps"),
                limit=settings.max_ais_steps,
            )
    cost = plan.cost(inputs, replicates)
    if cost.samples > settings.max_batch_k:
        k_max = cost.samples // (inputs * replicates)
        raise PayloadTooLarge(
            f"inputs x k x replicates = {inputs} x {k_max} x {replicates} = {cost.samples}, over the budget "
            f"{settings.max_batch_k}",
            field=inputs_field,
            limit=settings.max_batch_k,
        )
    if cost.jackknife > settings.max_jackknife_elements:
        jvi = [(f, e.spec) for f, e in zip(fields, plan.entries, strict=True) if e.spec.is_jackknife]
        field, spec = max(jvi, key=lambda item: item[1].jackknife_work())
        raise PayloadTooLarge(
            f"JVI of order {spec.order} at k={spec.k} averages {spec.jackknife_work():.3g} leave-j-out terms per "
            f"input; the plan's JVIs average {cost.jackknife:.3g} for {inputs} inputs x {replicates} replicates: "
            f"over the budget {settings.max_jackknife_elements:.3g}; lower k, the order or the batch",
            field=_at(field, "k"),
            limit=settings.max_jackknife_elements,
        )
    if cost.gradient_evals > settings.max_ais_evals:
        annealed = [f for f, e in zip(samplers, plan.entries, strict=True) if e.sampler.annealed]
        raise PayloadTooLarge(
            f"AIS work replicates x inputs x (chains + tuning chains) x (1 + (steps - 1) x leapfrog) = "
            f"{cost.gradient_evals} gradient evaluations, over the budget {settings.max_ais_evals}",
            field=annealed[0] if len(set(annealed)) == 1 else "estimators",
            limit=settings.max_ais_evals,
        )
    return cost


def require_fixed(plan: Plan, sampler_fields: Sequence[str]) -> None:
    """Every AIS schedule fixed: ``steps: auto`` is resolved by the doors that look the model's certificates
    up (evidence, compare, jobs); elsewhere it is a 422 naming the field."""
    for field, entry in zip(sampler_fields, plan.entries, strict=True):
        if isinstance(entry.sampler, AIS) and entry.sampler.auto:
            raise InvalidInput(
                f"{_at(field, 'steps')}: auto is chosen per model by its certificate, which this endpoint does not "
                "look up (a comparison of several models, OIP): name the steps, e.g. the certified ones "
                "(GET /v1/models/{name}/certificates)",
                field=_at(field, "steps"),
            )


def bounded(plan: Plan, settings: Settings) -> Plan:
    """``plan`` with each sample count and AIS schedule cut to the limits that bind requests and jobs alike
    (``max_k``, ``max_ais_steps``): advice that escalates past them (4x the temperatures) would be refused
    wherever it was sent, so it names the most this server runs instead."""
    entries = []
    for e in plan.entries:
        spec, sampler = e.spec, e.sampler
        if spec.k > settings.max_k:
            spec = dataclasses.replace(spec, k=settings.max_k)
        if isinstance(sampler, AIS) and sampler.temperatures > settings.max_ais_steps:
            sampler = dataclasses.replace(sampler, steps=settings.max_ais_steps)
        entries.append(Entry(spec, sampler))
    return Plan(tuple(entries))


def check_bdmc(settings: Settings, sampler: AIS, inputs: int, k: int) -> None:
    """BDMC runs forward and reverse AIS with ``k`` chains each on ``inputs`` simulated inputs."""
    if inputs > settings.max_batch:
        raise PayloadTooLarge(
            f"{inputs} inputs, at most {settings.max_batch}", field="num_inputs", limit=settings.max_batch
        )
    if k > settings.max_k:
        raise InvalidInput(f"k={k} is over the limit {settings.max_k}", field="k", limit=settings.max_k)
    if inputs * k > settings.max_batch_k:
        raise PayloadTooLarge(
            f"inputs x k = {inputs} x {k} = {inputs * k}, over the budget {settings.max_batch_k}",
            field="num_inputs",
            limit=settings.max_batch_k,
        )
    if sampler.temperatures > settings.max_ais_steps:
        raise InvalidInput(
            f"steps={sampler.temperatures} is over the limit {settings.max_ais_steps}",
            field="sampler.steps",
            limit=settings.max_ais_steps,
        )
    evals = inputs * sampler.bdmc_evaluations(k)
    if evals > settings.max_ais_evals:
        raise PayloadTooLarge(
            f"BDMC work inputs x (2 x chains + tuning chains) x (1 + (steps - 1) x leapfrog) = {evals} gradient "
            f"evaluations, over the budget {settings.max_ais_evals}",
            field="sampler",
            limit=settings.max_ais_evals,
        )
