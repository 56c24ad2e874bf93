"""Evaluation jobs over whole data sets: submit, status, Server-Sent Events, results, cancel, list."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..deps import CertifierDep, RegistryDep, SettingsDep
from ..errors import JobActive, JobNotFound, ServerSaturated, StoreUnavailable
from ..jobs.present import status
from ..jobs.runner import JobRunner
from ..jobs.schemas import JobList, JobStatus
from ..jobs.store import TERMINAL, JobRow, JobStore
from ..jobs.submit import owner, read_submission, store_job
from ..schemas import problem_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = problem_responses(401, 404, 413, 415, 422, 429, 503, 507)
EVENT_POLL_S = 0.5  # how often an event stream looks at its job
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RESULTS_PAGE = 500  # rows read from the store at a time while streaming results


def _jobs_off(request: Request) -> StoreUnavailable:
    return StoreUnavailable(
        f"jobs are off: {request.app.state.jobs_off}; evidence and the other routes are served",
        headers={"Retry-After": "30"},
    )


async def get_store(request: Request) -> JobStore:
    if request.app.state.jobs is None:
        raise _jobs_off(request)
    return request.app.state.jobs


async def get_runner(request: Request) -> JobRunner:
    if request.app.state.runner is None:
        raise _jobs_off(request)
    return request.app.state.runner


StoreDep = Annotated[JobStore, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


@router.post("", status_code=202, response_model=JobStatus, responses={**ERRORS, **problem_responses(409)})
async def submit(
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
    certifier: CertifierDep,
) -> JobStatus:
    """Run estimators over a whole data set in the background. JSON (``model``, ``inputs``, ``labels``,
    ``estimators``, ``seed``, ``binarize``) or multipart/form-data (``model``, file ``data``: IDX, gzipped
    or not, ``.npy``, ``.npz`` or a zip of PNGs; file ``labels``; ``estimators`` repeated as
    ``NAME:K[:ORDER][@SAMPLER]``; ``sampler``, ``steps``, ``leapfrog``, ``seed``, ``binarize``). Answers 202
    with the job and its ``Location``."""
    submission = await read_submission(request, registry, settings)
    request.state.log.update(model=submission.entry.name)
    # steps auto runs at the setting certified when the job is accepted: every chunk, and a resumed job, the same.
    submission.plan = certifier.plan(submission.entry, submission.plan, [f"{f}.sampler" for f in submission.fields])
    job = await asyncio.to_thread(store_job, store, settings, owner(settings), submission)
    runner.wake()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return status(job)


MIN_PREFIX = 6  # as git does: any unique prefix of an id names its job (the CLI's progress bar shows 8)


def check_id(value: str, what: str) -> None:
    """A job's or a comparison's id, or a unique prefix of it: hex, at least ``MIN_PREFIX`` characters."""
    if not (MIN_PREFIX <= len(value) <= 32 and all(c in "0123456789abcdef" for c in value)):
        raise JobNotFound(
            f"no {what} with id {value!r} (an id is 32 hex digits; a unique prefix of {MIN_PREFIX} or more will do)",
            field="id",
        )


async def _job(store: JobStore, job_id: str) -> JobRow:
    """The job named by its id or a unique prefix of it."""
    check_id(job_id, "job")
    matches = await asyncio.to_thread(store.find, job_id)
    if len(matches) > 1:
        raise JobNotFound(f"{job_id!r} is the prefix of more than one job id: give more of it", field="id")
    if not matches:
        raise JobNotFound(f"no job with id {job_id!r}", field="id")
    return matches[0]


@router.get("", response_model=JobList, responses=ERRORS)
async def list_jobs(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JobList:
    """Jobs, newest first, a page at a time."""
    rows, total = await asyncio.to_thread(store.page, limit, offset)
    following = f"/v1/jobs?limit={limit}&offset={offset + limit}" if offset + limit < total else None
    return JobList(jobs=[status(j) for j in rows], total=total, limit=limit, offset=offset, next=following)


@router.get("/{job_id}", response_model=JobStatus, responses=ERRORS)
async def get_job(job_id: str, store: StoreDep) -> JobStatus:
    """State, progress (inputs done and total, elapsed, ETA) and the per-estimator summary so far."""
    return status(await _job(store, job_id))


@router.delete("/{job_id}", response_model=JobStatus, responses={**ERRORS, **problem_responses(409)})
async def cancel_job(
    job_id: str,
    store: StoreDep,
    purge: Annotated[
        bool, Query(description="Delete a finished job with its rows (and its data set if unused)")
    ] = False,
) -> Response | JobStatus:
    """Cancel: a queued job at once, a running one after the chunk in hand (its finished rows are kept).
    A finished job is left as it is. With ``purge=true``: delete a finished job, its rows, and its data set
    if no other job uses it (204; 409 while it is queued or running)."""
    if purge:
        found = await _job(store, job_id)
        if not await asyncio.to_thread(store.delete, found.id):
            raise JobActive(
                f"job {found.id} is {found.state}: cancel it first (DELETE without purge); it stops after its chunk",
                field="id",
            )
        return Response(status_code=204)
    found = await _job(store, job_id)
    job = await asyncio.to_thread(store.cancel, found.id)
    assert job is not None
    return status(job)


@router.get("/{job_id}/events", responses=ERRORS, response_class=StreamingResponse)
async def job_events(job_id: str, store: StoreDep, request: Request, settings: SettingsDep) -> StreamingResponse:
    """Server-Sent Events: ``progress`` (the job's status) whenever it changes, then ``end`` once it has
    succeeded, failed or been cancelled."""
    job_id = (await _job(store, job_id)).id
    streams = request.app.state.event_streams
    if streams["open"] >= settings.max_event_streams:
        raise ServerSaturated(
            f"{streams['open']} event streams are open, the limit {settings.max_event_streams}; poll GET /v1/jobs/{job_id} "
            "instead, or retry",
            limit=settings.max_event_streams,
            headers={"Retry-After": str(settings.retry_after_s)},
        )

    async def events() -> AsyncIterator[str]:
        streams["open"] += 1  # counted while the stream runs, given back however it ends
        try:
            async for event in _events():
                yield event
        finally:
            streams["open"] -= 1

    async def _events() -> AsyncIterator[str]:
        last, quiet = None, 0.0
        while True:
            job = await asyncio.to_thread(store.get, job_id)
            assert job is not None
            key = (job.state, job.done)
            if key != last:
                last, quiet = key, 0.0
                yield f"event: progress\ndata: {status(job).model_dump_json()}\n\n"
            if job.state in TERMINAL:
                yield f"event: end\ndata: {json.dumps({'state': job.state})}\n\n"
                return
            await asyncio.sleep(EVENT_POLL_S)
            quiet += EVENT_POLL_S
            if quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _csv_header(names: list[str]) -> list[str]:
    cells = ["log_px", "std_err", "verdict", "khat", "ess"]
    return ["index", "label", *[f"{n}.{c}" for n in names for c in cells]]


def _csv_row(row: dict[str, Any]) -> list[Any]:
    out: list[Any] = [row["index"], row["label"]]
    for e in row["estimates"]:
        d = e.get("diagnostics", {})
        out += [e.get("log_px"), e.get("std_err"), e["verdict"]["level"], d.get("khat"), d.get("ess")]
    return out


@router.get(
    "/{job_id}/results",
    responses={**ERRORS, 200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    response_class=StreamingResponse,
)
async def job_results(
    job_id: str,
    store: StoreDep,
    format: Annotated[
        str, Query(pattern="^(jsonl|csv)$", description="jsonl (one JSON row per line) or csv")
    ] = "jsonl",
) -> StreamingResponse:
    """One row per finished input, in index order: index, label, and per estimator log p(x), std_err,
    verdict and diagnostics (CSV: the verdict's level, k-hat and ESS). Available while the job runs."""
    job = await _job(store, job_id)
    job_id = job.id
    names = [str(e) for e in job.plan.entries]

    def page(after: int) -> list[str]:
        return store.results(job_id, after, RESULTS_PAGE)

    async def rows() -> AsyncIterator[str]:
        after = -1
        if format == "csv":
            yield csv_line(_csv_header(names))
        while True:
            chunk = await asyncio.to_thread(page, after)
            if not chunk:
                return
            for text in chunk:
                yield csv_line(_csv_row(json.loads(text))) if format == "csv" else text + "\n"
            after = json.loads(chunk[-1])["index"]

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    disposition = f'attachment; filename="job-{job_id}.{format}"'
    return StreamingResponse(rows(), media_type=media, headers={"Content-Disposition": disposition})


def csv_line(cells: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if c is None else c for c in cells])
    return buffer.getvalue()
