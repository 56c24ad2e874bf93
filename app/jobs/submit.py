"""Submitting a job: read the request (JSON or a multipart upload of a data set), convert its estimators
to a ``Plan`` once, check the whole job against the limits, and store it with its data set."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import numpy as np
import orjson
import torch
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from logpx.estimators import DEFAULT_SPEC
from logpx.plan import Entry, Plan

from ..config import Settings
from ..errors import (
    InsufficientStorage,
    InvalidInput,
    PayloadTooLarge,
    TooManyJobs,
    UnsupportedMediaType,
    store_answers,
)
from ..inputs import inputs_from_json, plan_binarization
from ..limits import check_plan, require_fixed
from ..plans import estimator_in, plan_in, require_distinct, sampler_in, sampler_out
from ..registry import ModelEntry, ModelRegistry
from ..schemas import CompareEstimatorIn, SamplerIn
from ..usecases import latent_model
from .datasets import Dataset, decode_dataset, decode_labels, to_stored
from .schemas import ComparisonRequest, DatasetInfo, JobOptions, JobRequest
from .store import JobRow, JobStore, QuotaExceeded

__all__ = ["Submission", "owner", "read_submission", "store_job", "store_jobs"]


def owner(settings: Settings) -> str:
    """Whose quota a job counts against. The service knows one identity per token it accepts: with
    ``LOGPX_API_TOKEN`` set, every request that got past the guard is that token's (however its header was
    spelled); without one, every request is the same anonymous client (a header proves nothing then)."""
    token = settings.api_token
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else "anonymous"


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


def _options(plan: Plan, seed: Any, binarize: Any) -> JobOptions:
    """The plan and settings as the job's echo of its request."""
    estimators = [
        CompareEstimatorIn(**estimator_in(e.spec).model_dump(), sampler=sampler_out(e.sampler)) for e in plan.entries
    ]
    try:
        return JobOptions.model_validate({"estimators": estimators, "seed": seed, "binarize": binarize})
    except ValidationError as exc:
        raise _validation_error(exc, ()) from None


def _form_plan(form: Any) -> tuple[Plan, JobOptions]:
    """Multipart fields: ``estimators`` (repeated, the plan's grammar ``NAME:K[:ORDER][@SAMPLER]``),
    ``sampler`` (for entries that name none: ``importance`` or ``ais``, with ``steps`` and ``leapfrog``),
    ``seed``, ``binarize``."""
    field = {name: next(iter(_text(form, name)), "") for name in ("sampler", "steps", "leapfrog", "seed", "binarize")}
    raw = {"name": field["sampler"] or "importance"} | {key: field[key] for key in ("steps", "leapfrog") if field[key]}
    try:
        sampler = sampler_in(SamplerIn.model_validate(raw), "sampler")
    except ValidationError as exc:
        raise _validation_error(exc, ("sampler",)) from None
    entries = []
    for i, text in enumerate(_text(form, "estimators") or [str(DEFAULT_SPEC)]):
        try:
            entry = Entry.parse(text)
        except ValueError as exc:
            raise InvalidInput(
                f"estimators[{i}]: {exc}", field=f"estimators[{i}]", limit="NAME:K[:ORDER][@SAMPLER]"
            ) from None
        entries.append(entry if "@" in text else Entry(entry.spec, sampler))
    plan = Plan(tuple(entries))
    require_distinct(plan)
    return plan, _options(plan, field["seed"] or 0, field["binarize"] or None)


class Submission:
    """A job as read from its request: the model (a comparison's: the models), the plan with the fields it
    came from, the options to echo, and the decoded data set."""

    def __init__(
        self, entries: list[ModelEntry], plan: Plan, fields: list[str], options: JobOptions, dataset: Dataset
    ) -> None:
        self.entries, self.plan, self.fields, self.options, self.dataset = entries, plan, fields, options, dataset

    @property
    def entry(self) -> ModelEntry:
        return self.entries[0]


MAX_MODELS = 8  # models in one comparison: pairs grow as its square


def _models(registry: ModelRegistry, names: list[str]) -> list[ModelEntry]:
    """A comparison's models: ready, distinct, at least two, and able to score the same inputs (one input
    shape and one likelihood: the same data are data to all of them); one 422 naming ``models`` otherwise."""
    if len(names) < 2 or len(set(names)) != len(names) or len(names) > MAX_MODELS:
        raise InvalidInput(
            f"models: a comparison takes 2 to {MAX_MODELS} distinct models, got {names}",
            field="models",
            limit=MAX_MODELS,
        )
    entries = [registry.get_ready(name) for name in names]
    for e in entries:
        latent_model(e)  # a 422 naming the family that cannot run jobs
    first = entries[0]
    for e in entries[1:]:
        if tuple(e.model.input_shape) != tuple(first.model.input_shape) or e.model.likelihood != first.model.likelihood:
            raise InvalidInput(
                f"models: {first.name} takes {list(first.model.input_shape)} inputs with a {first.model.likelihood} "
                f"likelihood, {e.name} {list(e.model.input_shape)} with a {e.model.likelihood} one: only models "
                "of one input shape and one likelihood score the same data",
                field="models",
            )
    return entries


async def _json_body(request: Request, settings: Settings) -> bytes:
    """A JSON job body, at most ``LOGPX_MAX_BODY_BYTES`` (as a request's): parsed, every number becomes a
    Python object 20-30 times its text, so the upload limit is for data-set files, whose arrays stay compact."""
    limit = settings.max_body_bytes
    too_large = PayloadTooLarge(
        f"body: a JSON job body is at most {limit} bytes; send a larger data set as a file (multipart: IDX, "
        ".npy, .npz or a zip of PNGs)",
        field="body",
        limit=limit,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


async def read_submission(
    request: Request, registry: ModelRegistry, settings: Settings, *, comparison: bool = False
) -> Submission:
    """A job's request, or with ``comparison`` a comparison's (``models`` instead of ``model``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await _json_body(request, settings)
        try:
            raw = await asyncio.to_thread(orjson.loads, body)
            req = (ComparisonRequest if comparison else JobRequest).model_validate(raw)
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
        entries = (
            _models(registry, req.models) if isinstance(req, ComparisonRequest) else [registry.get_ready(req.model)]
        )
        entry = entries[0]
        fields = [f"estimators[{i}]" for i in range(len(req.estimators))]
        plan = plan_in([(f, e, e.sampler) for f, e in zip(fields, req.estimators, strict=True)], distinct=True)
        x = await asyncio.to_thread(
            inputs_from_json, req.inputs, req.scale, entry.model.input_shape, "inputs", entry.domain
        )
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
        return Submission(entries, plan, fields, options, Dataset(x.numpy(), labels, "json"))
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r}: send application/json or multipart/form-data",
            field="Content-Type",
            limit=["application/json", "multipart/form-data"],
        )
    async with request.form(max_files=2, max_fields=64) as form:  # closes the spooled upload files
        if comparison:
            entries = _models(registry, _text(form, "models"))
        else:
            model = form.get("model")
            if not isinstance(model, str) or not model:
                raise InvalidInput("model: the form field naming the model is missing", field="model")
            entries = [registry.get_ready(model)]
        entry = entries[0]
        data = await _file(form, "data")
        if data is None:
            raise InvalidInput("data: the data-set file is missing", field="data", limit="idx, npy, npz or zip of png")
        plan, options = _form_plan(form)
        shape = tuple(entry.model.input_shape)
        max_bytes = settings.max_job_inputs * math.prod(shape) * 8 + 4096  # the largest acceptable data set, as float64
        dataset = await asyncio.to_thread(
            decode_dataset, data, shape, max_inputs=settings.max_job_inputs, max_bytes=max_bytes, domain=entry.domain
        )
        label_file = await _file(form, "labels")
        if label_file is not None:
            dataset.labels = await asyncio.to_thread(decode_labels, label_file, dataset.x.shape[0], max_bytes=max_bytes)
    return Submission(entries, plan, [f"estimators[{i}]" for i in range(len(plan))], options, dataset)


def chunk_size(settings: Settings, plan: Plan) -> int:
    """Inputs per chunk: about ``job_chunk_evals`` model evaluations (the plan's one cost model), within
    the per-request limits on inputs and on inputs x samples."""
    cost = plan.cost(1)
    fit = settings.job_chunk_evals // max(1, cost.evaluations)
    return max(1, min(fit, settings.max_batch, settings.max_batch_k // cost.samples))


# A result row's bytes, for the store's admission check: measured on the shipped models' rows, an estimator's
# cell with its diagnostics, verdict and advice is 0.9-1 KB (16 estimators: 14.8 KB a row), the row itself ~30 B.
ROW_BYTES, ESTIMATE_BYTES = 64, 1000


def store_job(store: JobStore, settings: Settings, who: str, sub: Submission) -> JobRow:
    """Check the job as a whole, then store it with its data set; a store that is full is a 507, one that
    does not answer a 503, never a 500 (nothing was accepted)."""
    return store_jobs(store, settings, who, sub)[0]


def store_jobs(
    store: JobStore, settings: Settings, who: str, sub: Submission, comparison: str | None = None
) -> list[JobRow]:
    """``store_job`` for each model of the submission, all or none (a comparison's, named ``comparison``)."""
    with store_answers(settings.retry_after_s, field="data"):
        return _store_jobs(store, settings, who, sub, comparison)


def _store_jobs(store: JobStore, settings: Settings, who: str, sub: Submission, comparison: str | None) -> list[JobRow]:
    """Check the job as a whole before it is accepted (every chunk within the request limits, the data set
    suited to the model's likelihood under its binarisation), then store it with its data set. A comparison's
    models all binarise as its first does: the same binary inputs for every model (per input, never per model)."""
    model = latent_model(sub.entry)
    dataset = sub.dataset
    require_fixed(sub.plan, [f"{f}.sampler" for f in sub.fields])
    chunk = min(chunk_size(settings, sub.plan), dataset.x.shape[0])
    check_plan(settings, sub.plan, chunk, sub.fields)  # every chunk within the limits, checked once
    binarization = plan_binarization(
        torch.from_numpy(dataset.x),
        model.likelihood,
        sub.options.binarize,
        sub.options.seed,
        sub.entry.binarize,
        sub.entry.binarize_seed,
    )
    sha, data, labels = to_stored(dataset)
    size = 0 if store.has_dataset(sha) else len(data) + len(labels or b"")
    rows = int(dataset.x.shape[0]) * (ROW_BYTES + ESTIMATE_BYTES * len(sub.plan)) * len(sub.entries)
    held = store.stored_bytes()
    if held + size + rows > settings.max_store_bytes:
        raise InsufficientStorage(
            f"the job store holds {held} of its {settings.max_store_bytes} bytes (data sets and result rows); this job "
            f"needs about {size + rows} more ({size} for its data set, {rows} for its results): delete finished jobs "
            "(DELETE /v1/jobs/ID?purge=true, `logpx job delete ID`) or raise LOGPX_MAX_STORE_BYTES",
            field="data",
            limit=settings.max_store_bytes,
        )
    shape = [int(dataset.x.shape[1])]
    store.put_dataset(sha, int(dataset.x.shape[0]), shape, dataset.source, data, labels)
    info = DatasetInfo(sha256=sha, count=int(dataset.x.shape[0]), source=dataset.source, labels=labels is not None)
    names = [e.name for e in sub.entries]
    request = {
        "options": sub.options.model_dump(mode="json"),
        "binarization": binarization.model_dump(mode="json"),
        "dataset": info.model_dump(),
        **({"models": names} if comparison else {}),
    }
    total = int(dataset.x.shape[0])
    try:
        return store.create_jobs(
            who, names, sha, sub.plan, request, total, chunk, settings.max_active_jobs, comparison=comparison
        )
    except QuotaExceeded:
        raise TooManyJobs(
            f"this token has {settings.max_active_jobs} queued or running jobs and this needs {len(names)} more; "
            "wait for one or cancel one",
            field="Authorization",
            limit=settings.max_active_jobs,
        ) from None
