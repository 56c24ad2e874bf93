"""The HTTP doors' one conversion between request objects and the library's ``Plan`` (``logpx.plan``):
``EstimatorIn`` + ``SamplerIn`` -> ``Entry`` on the way in, with errors naming the field the client sent,
and ``Entry`` / ``Plan`` -> ``EstimatorIn`` / ``SamplerIn`` / ``Rerun`` on the way out."""

from __future__ import annotations

from collections.abc import Sequence

from logpx.estimators import NotExact
from logpx.plan import Entry, EstimatorSpec, Importance, Plan, Sampler

from .errors import InvalidInput
from .schemas import EstimatorIn, Rerun, SamplerIn

__all__ = [
    "Field",
    "entry_in",
    "estimator_in",
    "plan_in",
    "require_distinct",
    "rerun_out",
    "sampler_in",
    "sampler_out",
]


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def sampler_in(s: SamplerIn, field: str) -> Sampler:
    """The request's sampler as a plan's value, defaults filled in; a 422 naming ``field`` if it cannot be."""
    cls = Sampler.registry[s.name]  # the schema admits registered, requestable names only
    try:
        return cls.from_settings(s.model_dump(exclude={"name"}, exclude_none=True))
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


def entry_in(e: EstimatorIn, sampler: SamplerIn | None, field: str, sampler_field: str | None = None) -> Entry:
    """One estimator of a request and its sampler as a plan entry; a JVI order whose terms cannot all be
    exact is a 422 naming the order, why, and the largest k at which it is exact."""
    try:
        spec = EstimatorSpec(e.name, e.k, e.order or 1)
    except NotExact as exc:
        raise InvalidInput(str(exc), field=_at(field, "order"), limit={"largest_k": exc.largest_k}) from None
    except ValueError as exc:
        raise InvalidInput(f"{field or 'estimator'}: {exc}", field=field or "estimator") from None
    where = sampler_field if sampler_field is not None else _at(field, "sampler")
    return Entry(spec, sampler_in(sampler, where) if sampler is not None else Importance())


Field = tuple[str, EstimatorIn, SamplerIn | None]


def plan_in(items: Sequence[Field], field: str = "estimators", *, distinct: bool = False) -> Plan:
    """A request's estimators (each with the field that holds it, and its sampler) as one plan; with
    ``distinct`` (results named by entry), the same entry twice is a 422 naming ``field``."""
    plan = Plan(tuple(entry_in(e, s, f) for f, e, s in items))
    if distinct:
        require_distinct(plan, field)
    return plan


def require_distinct(plan: Plan, field: str = "estimators") -> None:
    twice = plan.repeated()
    if twice is not None:
        raise InvalidInput(f"{field}: the same estimator twice ({twice})", field=field, limit="distinct estimators")


def estimator_in(spec: EstimatorSpec) -> EstimatorIn:
    return EstimatorIn(name=spec.name, k=spec.k, order=spec.jackknife_order)


def sampler_out(sampler: Sampler) -> SamplerIn:
    """A plan's sampler as the API states it, every setting filled in."""
    return SamplerIn.model_validate({"name": sampler.name, **sampler.settings()})


def rerun_out(plan: Plan | None) -> Rerun | None:
    """A verdict's advice, a one-entry plan, as the request objects that run it."""
    if plan is None:
        return None
    (entry,) = plan.entries
    return Rerun(estimator=estimator_in(entry.spec), sampler=sampler_out(entry.sampler))
