"""From the library's results to the HTTP contract's schemas: one presenter for every route and the jobs.
Numbers that are not finite become ``null`` (JSON has no NaN); a verdict's advice plan becomes the request
objects that run it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import torch

from logpx.certificate import Certificate
from logpx.estimators import STD_ERR_FORMULAS, Diagnostics, Estimate, bits_per_dim, khat_threshold
from logpx.estimators import Verdict as VerdictValue
from logpx.plan import Entry, Plan
from logpx.samplers import Outcome, Speed, duration

from . import schemas
from .config import Settings
from .errors import ProblemError
from .inputs import finite_or_none
from .limits import bounded, check_plan
from .plans import estimator_in, rerun_out, sampler_out

__all__ = [
    "NO_MODEL",
    "ZERO_TIMING",
    "Advising",
    "Units",
    "diagnostics_out",
    "estimator_out",
    "floats",
    "input_estimates",
    "rerun_costs",
    "verdict_out",
    "verdicts_out",
]

ZERO_TIMING = schemas.Timing(queue_s=0.0, compute_s=0.0, total_s=0.0)  # filled in once the task has run


def floats(t: torch.Tensor) -> list[float | None]:
    return [finite_or_none(float(v)) for v in t.detach().double().cpu().tolist()]


@dataclass(frozen=True)
class Advising:
    """What it takes to make advice runnable: the ``model`` it names (None: the client's own log-weights,
    for which logpx has no model), the ``inputs`` it would run on, the model's measured ``speed``, and the
    request deadline (None: the advice is for a job, which has none) with the ``settings`` whose limits a
    request must keep."""

    model: str | None
    inputs: int = 1
    speed: Speed | None = None
    deadline_s: float | None = None
    settings: Settings | None = None


NO_MODEL = Advising(None)
# A request is advised only where it should finish with room to spare: the speed measured at load (46,900 gradient
# evaluations/s on vae1-iwae50, this project's 2-core CPU) is within 9% of a 100-temperature run's (43,000/s) on
# an idle machine; beside one busy process the advised iwae:100@ais:1000 on one digit took 34.7 s, 1.4 times the
# 25 s that speed predicts.
MARGIN = 1.5


def _runnable(rerun: Plan, a: Advising) -> schemas.RerunCost | None:
    """What the advised plan costs here, and whether one request can run it or it takes a job."""
    if a.model is None or a.speed is None:
        return None
    seconds = a.speed.seconds(rerun.cost(a.inputs))
    inputs = f"{a.inputs} input" + ("s" if a.inputs != 1 else "")
    within = a.deadline_s is not None and seconds * MARGIN <= a.deadline_s
    if within and a.settings is not None:
        try:
            check_plan(a.settings, rerun, a.inputs, ["estimator"], sampler_fields=["sampler"])
        except ProblemError:
            within = False
    if within:
        note = f"{rerun} takes about {duration(seconds)} here for {inputs}: one request runs it"
    else:
        note = (
            f"{rerun} takes about {duration(seconds)} here for {inputs}, beyond what one request may (the "
            f"{a.deadline_s:g} s deadline and the request limits): run it as a job (POST /v1/jobs), which has no deadline"
        )
    request = rerun_out(rerun)
    assert request is not None
    return schemas.RerunCost(
        plan=str(rerun),
        rerun=request,
        seconds=round(seconds, 3),
        run_as="request" if within else "job",
        note=note,
    )


def _rerun(v: VerdictValue, advising: Advising) -> Plan | None:
    """The verdict's advised plan, within this server's limits where they are known (``bounded``)."""
    if v.rerun is None or advising.settings is None:
        return v.rerun
    return bounded(v.rerun, advising.settings)


def rerun_costs(verdicts: list[VerdictValue], advising: Advising) -> list[schemas.RerunCost]:
    """Each distinct rerun the verdicts advise, once, with what it costs here and how to run it."""
    plans = list(dict.fromkeys(p for v in verdicts if (p := _rerun(v, advising)) is not None))
    return [cost for plan in plans if (cost := _runnable(plan, advising)) is not None]


def verdict_out(v: VerdictValue, advising: Advising) -> schemas.Verdict:
    """The verdict as the API states it: its advice plan as the request objects that run it (``rerun``),
    and where that plan anneals, the endpoint that certifies its setting on the model. The same on any
    server: what the rerun costs here is stated beside the verdicts (``rerun_costs``)."""
    advice, rerun = v.advice, _rerun(v, advising)
    if rerun is not None and v.rerun is not None and rerun != v.rerun:
        advice = advice.replace(str(v.rerun), f"{rerun} (the most this server runs)")
    if rerun is not None and advising.model is not None and any(e.sampler.annealed for e in rerun.entries):
        advice += f" (POST /v1/models/{advising.model}/bdmc)"
    return schemas.Verdict(level=v.level.value, reasons=list(v.reasons), advice=advice, rerun=rerun_out(rerun))


def verdicts_out(verdicts: list[VerdictValue], advising: Advising) -> list[schemas.Verdict]:
    return [verdict_out(v, advising) for v in verdicts]


def certificate_out(c: Certificate) -> schemas.CertificateOut:
    return schemas.CertificateOut(
        setting=sampler_out(c.setting),
        plan=str(c.setting),
        checkpoint=c.checkpoint,
        chains=c.chains,
        inputs=c.inputs,
        mean_gap=c.mean_gap,
        gap_std_err=c.gap_std_err,
        gap_bound=c.gap_bound,
        log_w_var=c.log_w_var,
        seed=c.seed,
        seconds=round(c.seconds, 3),
        created=datetime.fromtimestamp(c.created, UTC).isoformat(timespec="seconds"),
    )


def estimator_out(
    entry: Entry, num_subsets: tuple[int, ...] = (), certificate: Certificate | None = None
) -> schemas.EstimatorOut:
    spec = entry.spec
    return schemas.EstimatorOut(
        **estimator_in(spec).model_dump(),
        subsets=[schemas.SubsetInfo(left_out=j, num_subsets=n) for j, n in enumerate(num_subsets, start=1)],
        std_err_formula=STD_ERR_FORMULAS[spec.name],
        sampler=sampler_out(entry.sampler),
        certificate=certificate_out(certificate) if certificate is not None else None,
    )


def diagnostics_out(d: Diagnostics, k: int, columns: slice = slice(None)) -> list[schemas.Diagnostics]:
    """One ``Diagnostics`` per input of ``columns``, each field's values moved off the tensor at once."""
    values = {name: floats(getattr(d, name)[columns]) for name in d._fields}
    count = len(next(iter(values.values())))
    return [
        schemas.Diagnostics(**{name: v[i] for name, v in values.items()}, khat_threshold=khat_threshold(k))
        for i in range(count)
    ]


@dataclass(frozen=True)
class Units:
    """How a model's log p(x) reads in bits per dimension: its ``dims`` and the ``offset`` of its data's
    domain (``logpx.estimators.bits_offset``; None: no reading)."""

    dims: int
    offset: float | None


def input_estimates(
    outcome: Outcome | tuple[Entry, Estimate],
    advising: Advising,
    with_diagnostics: bool,
    columns: slice = slice(None),
    units: Units | None = None,
) -> list[schemas.InputEstimate]:
    """One ``InputEstimate`` per input of ``columns``: the number (and in bits per dimension, with ``units``),
    its standard error, its verdict, the diagnostics when asked for, and the sampler's statistics where it has any."""
    entry, est = outcome[0], outcome[1]
    stats = outcome[2] if isinstance(outcome, Outcome) else None
    log_px, std_err = floats(est.log_px[columns]), floats(est.std_err[columns])
    verdicts = verdicts_out(est.verdicts[columns], advising)
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
    bits: list[float | None] = (
        floats(bits_per_dim(est.log_px[columns], units.dims, units.offset))
        if units is not None and units.offset is not None
        else [None] * len(log_px)
    )
    return [
        schemas.InputEstimate(log_px=v, std_err=e, diagnostics=d, verdict=verdict, sampler_stats=s, bits_per_dim=b)
        for v, e, d, verdict, s, b in zip(log_px, std_err, diagnostics, verdicts, sampler_stats, bits, strict=True)
    ]
