"""From the library's results to the HTTP contract's schemas: one presenter for every route and the jobs.
Numbers that are not finite become ``null`` (JSON has no NaN); a verdict's advice plan becomes the request
objects that run it."""

from __future__ import annotations

import torch

from logpx.estimators import STD_ERR_FORMULAS, Diagnostics, Estimate, khat_threshold
from logpx.estimators import Verdict as VerdictValue
from logpx.plan import Entry
from logpx.samplers import Outcome

from . import schemas
from .inputs import finite_or_none
from .plans import estimator_in, rerun_out, sampler_out

__all__ = [
    "ZERO_TIMING",
    "diagnostics_out",
    "estimator_out",
    "floats",
    "input_estimates",
    "verdict_out",
    "verdicts_out",
]

ZERO_TIMING = schemas.Timing(queue_s=0.0, compute_s=0.0, total_s=0.0)  # filled in once the task has run


def floats(t: torch.Tensor) -> list[float | None]:
    return [finite_or_none(float(v)) for v in t.detach().double().cpu().tolist()]


def verdict_out(v: VerdictValue, model: str | None) -> schemas.Verdict:
    """The verdict as the API states it: its advice plan as the request objects that run it (``rerun``),
    and where that plan anneals, the endpoint that certifies its setting on ``model`` (None: the client's
    own log-weights, for which logpx has no model)."""
    advice = v.advice
    if model is not None and v.rerun is not None and any(e.sampler.annealed for e in v.rerun.entries):
        advice += f" (POST /v1/models/{model}/bdmc)"
    return schemas.Verdict(level=v.level.value, reasons=list(v.reasons), advice=advice, rerun=rerun_out(v.rerun))


def verdicts_out(verdicts: list[VerdictValue], model: str | None) -> list[schemas.Verdict]:
    return [verdict_out(v, model) for v in verdicts]


def estimator_out(entry: Entry, num_subsets: tuple[int, ...] = ()) -> schemas.EstimatorOut:
    spec = entry.spec
    return schemas.EstimatorOut(
        **estimator_in(spec).model_dump(),
        subsets=[schemas.SubsetInfo(left_out=j, num_subsets=n) for j, n in enumerate(num_subsets, start=1)],
        std_err_formula=STD_ERR_FORMULAS[spec.name],
        sampler=sampler_out(entry.sampler),
    )


def diagnostics_out(d: Diagnostics, k: int, columns: slice = slice(None)) -> list[schemas.Diagnostics]:
    """One ``Diagnostics`` per input of ``columns``, each field's values moved off the tensor at once."""
    values = {name: floats(getattr(d, name)[columns]) for name in d._fields}
    count = len(next(iter(values.values())))
    return [
        schemas.Diagnostics(**{name: v[i] for name, v in values.items()}, khat_threshold=khat_threshold(k))
        for i in range(count)
    ]


def input_estimates(
    outcome: Outcome | tuple[Entry, Estimate], model: str | None, with_diagnostics: bool, columns: slice = slice(None)
) -> list[schemas.InputEstimate]:
    """One ``InputEstimate`` per input of ``columns``: the number, its standard error, its verdict, the
    diagnostics when asked for, and the sampler's statistics where it has any."""
    entry, est = outcome[0], outcome[1]
    stats = outcome[2] if isinstance(outcome, Outcome) else None
    log_px, std_err = floats(est.log_px[columns]), floats(est.std_err[columns])
    verdicts = verdicts_out(est.verdicts[columns], model)
    diagnostics: list[schemas.Diagnostics | None] = (
        list(diagnostics_out(est.diagnostics, entry.spec.k, columns)) if with_diagnostics else [None] * len(log_px)
    )
    sampler_stats: list[schemas.SamplerStats | None] = (
        [
            schemas.SamplerStats(acceptance=a, step_size=h)
            for a, h in zip(floats(stats.acceptance[columns]), floats(stats.step_size[columns]), strict=True)
        ]
        if stats is not None
        else [None] * len(log_px)
    )
    return [
        schemas.InputEstimate(log_px=v, std_err=e, diagnostics=d, verdict=verdict, sampler_stats=s)
        for v, e, d, verdict, s in zip(log_px, std_err, diagnostics, verdicts, sampler_stats, strict=True)
    ]
