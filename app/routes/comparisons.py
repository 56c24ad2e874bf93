"""Comparisons: several models scored on the same data set with the same plan, each model a job of its own
(the same store, leases and restarts), reported side by side with every pair's paired difference."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..deps import RegistryDep, SettingsDep
from ..errors import JobActive, JobNotFound
from ..jobs.compare import comparison_state, comparison_status, iter_rows, ordered
from ..jobs.present import iso
from ..jobs.schemas import ComparisonBrief, ComparisonList, ComparisonStatus
from ..jobs.store import ACTIVE, JobRow, JobStore
from ..jobs.submit import owner, read_submission, store_jobs
from ..schemas import problem_responses
from .jobs import RunnerDep, StoreDep, check_id, csv_line

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])
ERRORS = problem_responses(401, 404, 413, 415, 422, 429, 503, 507)


async def _comparison(store: JobStore, comparison_id: str) -> list[JobRow]:
    """The jobs of the comparison named by its id or a unique prefix of it."""
    check_id(comparison_id, "comparison")
    jobs = await asyncio.to_thread(store.comparison_jobs, comparison_id)
    ids = {j.comparison for j in jobs}
    if len(ids) > 1:
        raise JobNotFound(
            f"{comparison_id!r} is the prefix of more than one comparison id: give more of it", field="id"
        )
    if not jobs:
        raise JobNotFound(f"no comparison with id {comparison_id!r}", field="id")
    return ordered(jobs)


@router.post("", status_code=202, response_model=ComparisonStatus, responses=ERRORS)
async def submit(
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
) -> ComparisonStatus:
    """Score 2 to 8 models (of one input shape and likelihood) on one data set with the same plan, seed and
    binary inputs. The body is a job's (docs/api.md, Jobs) with ``models`` (JSON list, or the form field
    repeated) in place of ``model``. Answers 202 with the comparison and its ``Location``; each model runs
    as a job (listed in ``jobs``), and the comparison fills in as they do."""
    submission = await read_submission(request, registry, settings, comparison=True)
    request.state.log.update(model=",".join(e.name for e in submission.entries))
    cid = uuid.uuid4().hex
    jobs = await asyncio.to_thread(store_jobs, store, settings, owner(settings), submission, cid)
    runner.wake()
    response.headers["Location"] = f"/v1/comparisons/{cid}"
    return await asyncio.to_thread(comparison_status, store, jobs)


@router.get("", response_model=ComparisonList, responses=ERRORS)
async def list_comparisons(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ComparisonList:
    """Comparisons, newest first, a page at a time (their state and progress; the figures are at their id)."""
    ids, total = await asyncio.to_thread(store.comparisons, limit, offset)
    briefs = []
    for cid in ids:
        jobs = ordered(await asyncio.to_thread(store.comparison_jobs, cid))
        briefs.append(
            ComparisonBrief(
                id=cid,
                state=comparison_state(jobs),
                models=[j.model for j in jobs],
                estimators=[str(e) for e in jobs[0].plan.entries],
                done=min(j.done for j in jobs),
                total=jobs[0].total,
                created=iso(jobs[0].created) or "",
            )
        )
    following = f"/v1/comparisons?limit={limit}&offset={offset + limit}" if offset + limit < total else None
    return ComparisonList(comparisons=briefs, total=total, limit=limit, offset=offset, next=following)


@router.get("/{comparison_id}", response_model=ComparisonStatus, responses=ERRORS)
async def get_comparison(comparison_id: str, store: StoreDep) -> ComparisonStatus:
    """Each model's standing per estimator and every pair's paired difference with its verdict, on the
    inputs scored so far; its jobs' states and progress."""
    jobs = await _comparison(store, comparison_id)
    return await asyncio.to_thread(comparison_status, store, jobs)


@router.delete("/{comparison_id}", response_model=ComparisonStatus, responses={**ERRORS, **problem_responses(409)})
async def cancel_comparison(
    comparison_id: str,
    store: StoreDep,
    purge: Annotated[bool, Query(description="Delete a finished comparison's jobs with their rows")] = False,
) -> Response | ComparisonStatus:
    """Cancel every job of the comparison still queued or running (finished rows are kept); with
    ``purge=true``, delete a finished comparison's jobs and rows (204; 409 while any is active)."""
    jobs = await _comparison(store, comparison_id)
    if purge:
        active = [j for j in jobs if j.state in ACTIVE]
        if active:
            raise JobActive(
                f"comparison {jobs[0].comparison} has {len(active)} jobs queued or running: cancel it first", field="id"
            )
        for job in jobs:
            await asyncio.to_thread(store.delete, job.id)
        return Response(status_code=204)
    for job in jobs:
        if job.state in ACTIVE:
            await asyncio.to_thread(store.cancel, job.id)
    return await asyncio.to_thread(comparison_status, store, await _comparison(store, comparison_id))


@router.get(
    "/{comparison_id}/results",
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
    response_class=StreamingResponse,
)
async def comparison_results(comparison_id: str, store: StoreDep) -> StreamingResponse:
    """CSV, one row per input every model has scored: index, label, and per estimator and model log p(x),
    std_err and the verdict's level, models side by side (for plots of one against another)."""
    jobs = await _comparison(store, comparison_id)
    names = [str(e) for e in jobs[0].plan.entries]

    def load() -> list[dict[int, dict[str, object]]]:
        return [{row["index"]: row for row in iter_rows(store, job.id)} for job in jobs]

    async def lines() -> AsyncIterator[str]:
        per_job = await asyncio.to_thread(load)
        cells = ("log_px", "std_err", "verdict")
        yield csv_line(["index", "label", *[f"{j.model}.{n}.{c}" for n in names for j in jobs for c in cells]])
        for index in sorted(set.intersection(*(set(rows) for rows in per_job))):
            out: list[object] = [index, per_job[0][index]["label"]]
            for e in range(len(names)):
                for rows in per_job:
                    est = rows[index]["estimates"][e]  # type: ignore[index]
                    out += [est.get("log_px"), est.get("std_err"), est["verdict"]["level"]]
            yield csv_line(out)

    disposition = f'attachment; filename="comparison-{jobs[0].comparison}.csv"'
    return StreamingResponse(lines(), media_type="text/csv", headers={"Content-Disposition": disposition})
