"""A comparison as the API shows it: its models' jobs, each model's standing per estimator, and the paired
difference of every pair of models on the inputs both have scored so far (``logpx.estimators.paired``
does the arithmetic and the verdict; this module only reads the rows and presents)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from logpx.estimators import CONFIDENCE, ModelScores, PairedDifference, paired_difference, summarize_model
from logpx.plan import Entry, Plan

from ..plans import entry_in, rerun_out
from ..schemas import Rerun, Verdict
from .present import status
from .schemas import ComparisonStatus, DifferenceOut, StandingOut
from .store import ACTIVE, JobRow, JobStore

__all__ = ["comparison_state", "comparison_status", "iter_rows", "ordered"]

ROWS_PAGE = 2000  # result rows read from the store at a time


def ordered(jobs: list[JobRow]) -> list[JobRow]:
    """A comparison's jobs in the order its models were given."""
    order = jobs[0].request.get("models", [j.model for j in jobs])
    return sorted(jobs, key=lambda j: order.index(j.model) if j.model in order else len(order))


def comparison_state(jobs: list[JobRow]) -> str:
    """One state for all: failed or cancelled if any is, running while any runs, succeeded when all have."""
    states = {j.state for j in jobs}
    for state in ("failed", "cancelled", "running"):
        if state in states:
            return state
    return "succeeded" if states == {"succeeded"} else "queued"


def iter_rows(store: JobStore, job_id: str) -> Iterator[dict[str, Any]]:
    """Every stored result row of a job, in index order."""
    after = -1
    while True:
        page = store.results(job_id, after, ROWS_PAGE)
        for text in page:
            row = json.loads(text)
            after = row["index"]
            yield row
        if len(page) < ROWS_PAGE:
            return


def _rerun_plan(rerun: dict[str, Any] | None) -> Plan | None:
    if not rerun:
        return None
    r = Rerun.model_validate(rerun)
    return Plan((entry_in(r.estimator, r.sampler, "rerun"),))


def _scores(
    store: JobStore, jobs: list[JobRow], plan: Plan
) -> tuple[dict[tuple[str, Entry], ModelScores], dict[str, np.ndarray]]:
    """Per model and estimator, its estimate on every input of the data set (NaN where not done yet, or
    where it failed), and per model which inputs are done."""
    total = jobs[0].total
    out: dict[tuple[str, Entry], ModelScores] = {}
    done: dict[str, np.ndarray] = {}
    for job in jobs:
        done[job.model] = np.zeros(total, dtype=bool)
        values = np.full((len(plan.entries), total), np.nan)
        errors = np.full((len(plan.entries), total), np.nan)
        levels: list[list[str]] = [["unreliable"] * total for _ in plan.entries]
        reruns: list[Plan | None] = [None] * len(plan.entries)
        for row in iter_rows(store, job.id):
            i = row["index"]
            done[job.model][i] = True
            for e, estimate in enumerate(row["estimates"]):
                value = estimate.get("log_px")
                values[e, i] = value if value is not None else np.nan
                errors[e, i] = estimate.get("std_err") or np.nan
                levels[e][i] = estimate["verdict"]["level"]
                if reruns[e] is None:
                    reruns[e] = _rerun_plan(estimate["verdict"].get("rerun"))
        for e, entry in enumerate(plan.entries):
            out[(job.model, entry)] = ModelScores(job.model, values[e], errors[e], levels[e], reruns[e])
    return out, done


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _difference(estimator: str, d: PairedDifference) -> DifferenceOut:
    return DifferenceOut(
        estimator=estimator,
        a=d.a,
        b=d.b,
        count=d.count,
        mean=_finite(d.mean),
        std_err=_finite(d.se),
        mc_std_err=_finite(d.mc_se),
        unpaired_std_err=_finite(d.unpaired_se),
        interval=[_finite(d.interval[0]), _finite(d.interval[1])],
        confidence=CONFIDENCE,
        a_better=_finite(d.a_better),
        verdict=Verdict(
            level=d.verdict.level.value,
            reasons=list(d.verdict.reasons),
            advice=d.verdict.advice,
            rerun=rerun_out(d.verdict.rerun),
        ),
    )


def comparison_status(store: JobStore, jobs: list[JobRow]) -> ComparisonStatus:
    """The comparison's state, each model's standing per estimator, and every pair's paired difference on
    the inputs both models have scored so far."""
    jobs = ordered(jobs)
    plan = jobs[0].plan
    scores, done = _scores(store, jobs, plan)
    standings, differences = [], []
    for entry in plan.entries:
        name = str(entry)
        for job in jobs:
            mine, kept = scores[(job.model, entry)], done[job.model]
            s = summarize_model(
                ModelScores(
                    job.model, mine.log_px[kept], mine.std_err[kept], [v for v, k in zip(mine.levels, kept) if k]
                )
            )
            standings.append(
                StandingOut(
                    estimator=name,
                    model=job.model,
                    count=s.count,
                    mean=_finite(s.mean),
                    std_err=_finite(s.se),
                    mc_std_err=_finite(s.mc_se),
                    verdicts=s.levels,
                )
            )
        for i, a in enumerate(jobs):
            for b in jobs[i + 1 :]:
                differences.append(
                    _difference(name, paired_difference(scores[(a.model, entry)], scores[(b.model, entry)]))
                )
    cid = jobs[0].comparison or ""
    base = f"/v1/comparisons/{cid}"
    return ComparisonStatus(
        id=cid,
        state=comparison_state(jobs),
        models=[j.model for j in jobs],
        estimators=[str(e) for e in plan.entries],
        done=min(j.done for j in jobs),
        total=jobs[0].total,
        active=sum(j.state in ACTIVE for j in jobs),
        jobs=[status(j) for j in jobs],
        standings=standings,
        differences=differences,
        links={"self": base, "results": f"{base}/results"},
    )
