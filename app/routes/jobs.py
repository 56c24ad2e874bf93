"""Evaluation jobs over whole data sets: submit, status, Server-Sent Events, results, cancel, list."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import orjson
import torch
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from logpx.estimators import DEFAULT_SPEC, KHAT_EDGES, DatasetSummary, EstimatorSpec, parse_spec
from logpx.samplers import AISConfig

from .. import service
from ..config import Settings
from ..deps import RegistryDep, SettingsDep
from ..errors import InsufficientStorage, InvalidInput, JobNotFound, PayloadTooLarge, TooManyJobs, UnsupportedMediaType
from ..inputs import inputs_from_json, plan_binarization
from ..jobs.datasets import Dataset, decode_dataset, decode_labels, to_stored
from ..jobs.runner import JobRunner
from ..jobs.schemas import (
    DatasetInfo,
    JobLinks,
    JobList,
    JobOptions,
    JobRequest,
    JobStatus,
    JobSummary,
    KhatHistogram,
    Progress,
)
from ..jobs.store import TERMINAL, JobRow, JobStore
from ..registry import ModelEntry
from ..schemas import SamplerIn, problem_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = problem_responses(401, 404, 413, 415, 422, 429, 503, 507)
EVENT_POLL_S = 0.5  # how often an event stream looks at its job
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RESULTS_PAGE = 500  # rows read from the store at a time while streaming results


async def get_store(request: Request) -> JobStore:
    return request.app.state.jobs


async def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


StoreDep = Annotated[JobStore, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


def _owner(request: Request) -> str:
    """Jobs are counted per API token (its hash; the token itself is never stored)."""
    header = request.headers.get("authorization", "")
    return hashlib.sha256(header.encode()).hexdigest()[:32] if header else "anonymous"


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t is not None else None


def _name(spec: EstimatorSpec, sampler: SamplerIn) -> str:
    """An estimator's column name: ``iwae:5000``, ``jvi:5000:1``, ``iwae:16@ais:1000``."""
    base = f"{spec.name}:{spec.k}" + (f":{spec.order}" if spec.name == "jvi" else "")
    return base + (f"@ais:{sampler.steps}" if sampler.name == "ais" else "")


def status(job: JobRow) -> JobStatus:
    """A job's public state, progress and summary so far."""
    now = datetime.now(UTC).timestamp()
    end = job.finished if job.finished is not None else now
    rate = job.compute_s / job.done if job.done else None
    summary = []
    for name, estimator in zip(job.request["names"], job.request["estimators_out"], strict=True):
        entry = job.summary.get(name, {})
        s = DatasetSummary.from_dict(entry["values"]) if entry else DatasetSummary()
        worst = entry.get("worst") if entry else None
        summary.append(
            JobSummary(
                estimator=estimator,
                mean=s.mean if s.count else None,
                std_err=s.std_err,
                count=s.count,
                not_finite=s.not_finite,
                verdicts=s.levels,
                khat_histogram=KhatHistogram(edges=list(KHAT_EDGES), counts=s.khat),
                advice=worst["advice"] if worst else None,
                rerun=worst.get("rerun") if worst else None,  # absent from summaries stored before it existed
            )
        )
    base = f"/v1/jobs/{job.id}"
    return JobStatus(
        id=job.id,
        model=job.model,
        state=job.state,
        dataset=DatasetInfo(**job.request["dataset"]),
        options=JobOptions.model_validate(job.request["options"]),
        binarization=job.request["binarization"],
        chunk_size=job.chunk_size,
        progress=Progress(
            done=job.done,
            total=job.total,
            fraction=job.done / job.total,
            elapsed_s=end - job.started if job.started is not None else None,
            compute_s=job.compute_s,
            eta_s=rate * (job.total - job.done) if rate is not None and job.state == "running" else None,
        ),
        summary=summary,
        error=job.error,
        created=_iso(job.created) or "",
        started=_iso(job.started),
        finished=_iso(job.finished),
        links=JobLinks(self=base, events=f"{base}/events", results=f"{base}/results"),
    )


def _chunk_size(
    settings: Settings, specs: list[EstimatorSpec], samplers: list[tuple[AISConfig | None, SamplerIn]]
) -> int:
    """Inputs per chunk: about ``job_chunk_evals`` model evaluations (importance entries share one draw),
    within the per-request limits on inputs and on inputs x samples."""
    importance = max((s.k for s, (c, _) in zip(specs, samplers, strict=True) if c is None), default=0)
    ais = sum(s.k * c.steps * (c.leapfrog + 1) for s, (c, _) in zip(specs, samplers, strict=True) if c is not None)
    fit = settings.job_chunk_evals // max(1, importance + ais)
    return max(1, min(fit, settings.max_batch, settings.max_batch_k // max(s.k for s in specs)))


def _validation_error(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors()])


async def _file(form: Any, name: str) -> bytes | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, UploadFile):
        raise InvalidInput(f"{name}: expected a file upload", field=name, limit="file")
    return await value.read()


def _text(form: Any, name: str) -> list[str]:
    """Every value of a text field of the form (a file sent in its place is a 422 naming the field)."""
    values = form.getlist(name)
    if any(not isinstance(v, str) for v in values):
        raise InvalidInput(f"{name}: expected text, got a file", field=name, limit="text")
    return values


def _form_options(form: Any) -> JobOptions:
    """Multipart fields: ``estimators`` (repeated ``NAME:K[:ORDER]``), ``sampler`` (importance or ais),
    ``steps``, ``leapfrog``, ``seed``, ``binarize``."""
    field = {name: next(iter(_text(form, name)), "") for name in ("sampler", "steps", "leapfrog", "seed", "binarize")}
    sampler: dict[str, Any] = {"name": field["sampler"] or "importance"}
    for key in ("steps", "leapfrog"):
        if field[key]:
            sampler[key] = field[key]
    specs = _text(form, "estimators") or [f"{DEFAULT_SPEC.name}:{DEFAULT_SPEC.k}"]
    estimators = []
    for i, text in enumerate(specs):
        try:
            spec = parse_spec(text)
        except ValueError as exc:
            raise InvalidInput(f"estimators[{i}]: {exc}", field=f"estimators[{i}]", limit="NAME:K[:ORDER]") from None
        estimators.append(
            {"name": spec.name, "k": spec.k, "sampler": sampler} | ({"order": spec.order} if spec.name == "jvi" else {})
        )
    raw = {"estimators": estimators, "seed": field["seed"] or 0, "binarize": field["binarize"] or None}
    try:
        return JobOptions.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, ()) from None


async def _read_request(
    request: Request, registry: RegistryDep, settings: Settings
) -> tuple[ModelEntry, JobOptions, Dataset]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        try:
            raw = await asyncio.to_thread(orjson.loads, body)
            req = JobRequest.model_validate(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body: not valid JSON ({exc})", field="body") from None
        except ValidationError as exc:
            raise _validation_error(exc) from None
        if len(req.inputs) > settings.max_job_inputs:
            raise PayloadTooLarge(
                f"inputs: {len(req.inputs)} inputs, over {settings.max_job_inputs}",
                field="inputs",
                limit=settings.max_job_inputs,
            )
        entry = registry.get_ready(req.model)
        x = await asyncio.to_thread(inputs_from_json, req.inputs, req.scale, entry.model.input_shape)
        labels = None
        if req.labels is not None:
            if len(req.labels) != len(req.inputs):
                raise InvalidInput(
                    f"labels: {len(req.labels)} labels for {len(req.inputs)} inputs",
                    field="labels",
                    limit=len(req.inputs),
                )
            labels = np.asarray(req.labels, dtype=np.int64)
        options = JobOptions.model_validate(req.model_dump(include=set(JobOptions.model_fields)))
        return entry, options, Dataset(x.numpy(), labels, "json")
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r}: send application/json or multipart/form-data",
            field="Content-Type",
            limit=["application/json", "multipart/form-data"],
        )
    async with request.form(max_files=2, max_fields=64) as form:  # closes the spooled upload files
        model = form.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidInput("model: the form field naming the model is missing", field="model")
        entry = registry.get_ready(model)
        data = await _file(form, "data")
        if data is None:
            raise InvalidInput("data: the data-set file is missing", field="data", limit="idx, npy, npz or zip of png")
        options = _form_options(form)
        shape = tuple(entry.model.input_shape)
        max_bytes = settings.max_job_inputs * math.prod(shape) * 8 + 4096  # the largest acceptable data set, as float64
        dataset = await asyncio.to_thread(
            decode_dataset, data, shape, max_inputs=settings.max_job_inputs, max_bytes=max_bytes
        )
        label_file = await _file(form, "labels")
        if label_file is not None:
            dataset.labels = await asyncio.to_thread(decode_labels, label_file, dataset.x.shape[0], max_bytes=max_bytes)
    return entry, options, dataset


def _plan(entry: ModelEntry, settings: Settings, options: JobOptions, dataset: Dataset) -> tuple[int, dict[str, Any]]:
    """Check the job as a whole before it is accepted: every chunk must be within the request limits, and
    the data set must suit the model's likelihood under the chosen binarisation."""
    model = service.latent_model(entry)
    fields = [f"estimators[{i}]" for i in range(len(options.estimators))]
    specs, samplers = service.plan_estimators(settings, options.estimators, fields, 1)
    chunk = min(_chunk_size(settings, specs, samplers), dataset.x.shape[0])
    service.plan_estimators(settings, options.estimators, fields, chunk)  # every chunk within the limits
    names = [_name(spec, sampler_out) for spec, (_, sampler_out) in zip(specs, samplers, strict=True)]
    if len(set(names)) != len(names):
        raise InvalidInput("estimators: the same estimator twice", field="estimators", limit="distinct estimators")
    binarization = plan_binarization(
        torch.from_numpy(dataset.x), model.likelihood, options.binarize, options.seed, entry.binarize
    )
    estimators_out = [
        service.estimator_out(spec, (), sampler_out).model_dump(mode="json")
        for spec, (_, sampler_out) in zip(specs, samplers, strict=True)
    ]
    return chunk, {
        "options": options.model_dump(mode="json"),
        "names": names,
        "estimators_out": estimators_out,
        "binarization": binarization.model_dump(mode="json"),
    }


def _store_job(
    store: JobStore, settings: Settings, owner: str, model: str, dataset: Dataset, chunk: int, request: dict[str, Any]
) -> JobRow:
    if store.active_count(owner) >= settings.max_active_jobs:
        raise TooManyJobs(
            f"this token has {settings.max_active_jobs} queued or running jobs; wait for one or cancel one",
            field="Authorization",
            limit=settings.max_active_jobs,
        )
    sha, data, labels = to_stored(dataset)
    size = len(data) + len(labels or b"")
    if not store.has_dataset(sha) and store.stored_bytes() + size > settings.max_store_bytes:
        raise InsufficientStorage(
            f"the job store holds data sets up to {settings.max_store_bytes} bytes; this one needs {size} more",
            field="data",
            limit=settings.max_store_bytes,
        )
    shape = [int(dataset.x.shape[1])]
    store.put_dataset(sha, int(dataset.x.shape[0]), shape, dataset.source, data, labels)
    info = DatasetInfo(sha256=sha, count=int(dataset.x.shape[0]), source=dataset.source, labels=labels is not None)
    request = {**request, "dataset": info.model_dump()}
    return store.create_job(owner, model, sha, request, int(dataset.x.shape[0]), chunk)


@router.post("", status_code=202, response_model=JobStatus, responses=ERRORS)
async def submit(
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
) -> JobStatus:
    """Run estimators over a whole data set in the background. JSON (``model``, ``inputs``, ``labels``,
    ``estimators``, ``seed``, ``binarize``) or multipart/form-data (``model``, file ``data``: IDX, gzipped
    or not, ``.npy``, ``.npz`` or a zip of PNGs; file ``labels``; ``estimators`` repeated as
    ``NAME:K[:ORDER]``; ``sampler``, ``steps``, ``leapfrog``, ``seed``, ``binarize``). Answers 202 with
    the job and its ``Location``."""
    entry, options, dataset = await _read_request(request, registry, settings)
    request.state.log.update(model=entry.name)
    chunk, plan = await asyncio.to_thread(_plan, entry, settings, options, dataset)
    job = await asyncio.to_thread(_store_job, store, settings, _owner(request), entry.name, dataset, chunk, plan)
    runner.wake()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return status(job)


async def _job(store: JobStore, job_id: str) -> JobRow:
    job = await asyncio.to_thread(store.get, job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r}", field="id")
    return job


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


@router.delete("/{job_id}", response_model=JobStatus, responses=ERRORS)
async def cancel_job(job_id: str, store: StoreDep) -> JobStatus:
    """Cancel: a queued job at once, a running one after the chunk in hand (its finished rows are kept).
    A finished job is left as it is."""
    await _job(store, job_id)
    job = await asyncio.to_thread(store.cancel, job_id)
    assert job is not None
    return status(job)


@router.get("/{job_id}/events", responses=ERRORS, response_class=StreamingResponse)
async def job_events(job_id: str, store: StoreDep) -> StreamingResponse:
    """Server-Sent Events: ``progress`` (the job's status) whenever it changes, then ``end`` once it has
    succeeded, failed or been cancelled."""
    await _job(store, job_id)

    async def events() -> AsyncIterator[str]:
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
    names = job.request["names"]

    def page(after: int) -> list[str]:
        return store.results(job_id, after, RESULTS_PAGE)

    async def rows() -> AsyncIterator[str]:
        after = -1
        if format == "csv":
            yield _csv_line(_csv_header(names))
        while True:
            chunk = await asyncio.to_thread(page, after)
            if not chunk:
                return
            for text in chunk:
                yield _csv_line(_csv_row(json.loads(text))) if format == "csv" else text + "\n"
            after = json.loads(chunk[-1])["index"]

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    disposition = f'attachment; filename="job-{job_id}.{format}"'
    return StreamingResponse(rows(), media_type=media, headers={"Content-Disposition": disposition})


def _csv_line(cells: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if c is None else c for c in cells])
    return buffer.getvalue()
