"""``POST /v1/estimate``: the estimators on log-weights the client computed with any model.

The body is JSON (``EstimateRequest``), or the ``[k, B]`` array itself as a binary body: ``.npy``
(``application/x-npy``) or safetensors (``application/vnd.safetensors``: one tensor, or one named
``log_weights``), float32 or float64, with the estimators as query parameters (``estimator`` repeated,
``NAME[:K[:ORDER]]``; default ``iwae`` on every row)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from logpx.plan import Plan, parse_spec

from ..config import Settings
from ..deps import SettingsDep, WorkerDep
from ..errors import InvalidInput, UnsupportedMediaType
from ..json_route import JSONRoute
from ..limits import check_plan
from ..plans import plan_in
from ..schemas import EstimateRequest, EstimateResponse, EstimatorIn, problem_responses
from ..usecases.log_weights import estimate_log_weights

router = APIRouter(prefix="/v1", tags=["estimate"], route_class=JSONRoute)

NPY, SAFETENSORS = "application/x-npy", "application/vnd.safetensors"
BINARY = {"type": "string", "format": "binary"}
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EstimateRequest"}},
            NPY: {"schema": BINARY},
            SAFETENSORS: {"schema": BINARY},
        },
    }
}


def add_request_schema(openapi: dict[str, Any]) -> None:
    """Put ``EstimateRequest`` (referenced by ``REQUEST_BODY``, not a parameter FastAPI sees) and the models
    it uses into the OpenAPI document's components."""
    schema = EstimateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["EstimateRequest"] = schema


def _array(log_w: Any, field: str) -> torch.Tensor:
    """A ``[k, B]`` float64 tensor from a nested list or a numpy array; 422 naming what is wrong. -inf
    (a zero weight) is allowed; NaN and +inf are refused naming their column."""
    try:
        array = np.asarray(log_w, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: rows must all have the same length", field=field, limit="[k, B]") from None
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise InvalidInput(
            f"{field}: need shape [k >= 2, B >= 1], got {list(array.shape)}", field=field, limit="[k, B]"
        )
    bad = np.isnan(array) | np.isposinf(array)
    if bad.any():
        column = int(np.argwhere(bad)[0][1])
        raise InvalidInput(
            f"{field}[:, {column}]: NaN or +inf (a zero weight is -Infinity)",
            field=f"{field}[:, {column}]",
            limit="finite or -Infinity",
        )
    return torch.from_numpy(array)


def _binary(kind: str, body: bytes) -> torch.Tensor:
    try:
        if kind == NPY:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        else:
            from safetensors.numpy import load

            tensors = load(body)
            if len(tensors) != 1 and "log_weights" not in tensors:
                raise InvalidInput(
                    f"body: {len(tensors)} tensors; send one, or name it log_weights", field="body", limit="one tensor"
                )
            array = tensors.get("log_weights", next(iter(tensors.values()), None))
    except InvalidInput:
        raise
    except Exception:  # numpy and safetensors raise many types for malformed files
        raise InvalidInput(f"body: not a readable {kind} array", field="body", limit=kind) from None
    if array is None or array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
        raise InvalidInput("body: the array must be float32 or float64", field="body", limit=["float32", "float64"])
    return _array(array.astype(array.dtype.newbyteorder("=")), "body")  # either byte order, as the file says


def _plan(
    estimators: Sequence[tuple[str, str | None, int | None, int | None]], rows: int, batch: int, settings: Settings
) -> Plan:
    """The estimators as a plan over ``rows`` log-weights: each ``(field, name, k, order)``, k defaulting to
    every row; a k over the rows sent is a 422 naming the field. Limits checked once."""
    items = []
    for field, name, k, order in estimators:
        if k is not None and k > rows:
            raise InvalidInput(f"k={k} is more than the {rows} rows sent", field=f"{field}.k", limit=rows)
        try:
            e = EstimatorIn.model_validate(
                {"name": name, "k": k or rows, **({"order": order} if order is not None else {})}
            )
        except ValidationError as exc:
            raise InvalidInput(f"{field}: {exc.errors()[0]['msg']}", field=field) from None
        items.append((field, e, None))
    plan = plan_in(items, field="estimators")
    check_plan(settings, plan, batch, [f for f, _, _ in items], inputs_field="log_weights")
    return plan


def _query_estimator(text: str, index: int) -> tuple[str, str | None, int | None, int | None]:
    """``NAME[:K[:ORDER]]``: the plan's grammar, with K optional (every row) for log-weights sent whole."""
    field = f"estimator[{index}]"
    name, _, rest = text.partition(":")
    k_text, _, order_text = rest.partition(":")
    try:
        spec = parse_spec(f"{name}:{k_text or 2}" + (f":{order_text}" if order_text else ""))
    except ValueError:
        raise InvalidInput(
            f"{field}: {text!r} is not NAME[:K[:ORDER]]", field=field, limit="NAME[:K[:ORDER]]"
        ) from None
    return field, spec.name, int(k_text) if k_text else None, int(order_text) if order_text else None


@router.post(
    "/estimate",
    response_model=EstimateResponse,
    responses=problem_responses(401, 413, 415, 422, 503, 504),
    openapi_extra=REQUEST_BODY,
)
async def estimate(
    request: Request,
    worker: WorkerDep,
    settings: SettingsDep,
    estimator: Annotated[list[str] | None, Query(description="Binary bodies: NAME[:K[:ORDER]], repeated")] = None,
    discrete: Annotated[bool, Query(description="Binary bodies: the likelihood is a probability mass")] = False,
    diagnostics: Annotated[bool, Query(description="Binary bodies: include the diagnostics")] = True,
) -> EstimateResponse:
    """Every requested estimator, with standard errors, diagnostics and verdicts, on your log-weights."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        raw = await request.body()
        try:  # megabytes of numbers: parsed and validated off the event loop, which serves everyone else
            body = await asyncio.to_thread(EstimateRequest.model_validate_json, raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        log_w = await asyncio.to_thread(_array, body.log_weights, "log_weights")  # megabytes of numbers: off the loop
        fields = [(f"estimators[{i}]", e.name, e.k, e.order) for i, e in enumerate(body.estimators)]
        plan = _plan(fields, log_w.shape[0], log_w.shape[1], settings)
        return await estimate_log_weights(worker, settings, log_w, plan, body.discrete, body.diagnostics)
    if kind not in (NPY, SAFETENSORS):
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r}: send application/json, {NPY} or {SAFETENSORS}",
            field="Content-Type",
            limit=["application/json", NPY, SAFETENSORS],
        )
    log_w = await asyncio.to_thread(_binary, kind, await request.body())
    queries = [_query_estimator(t, i) for i, t in enumerate(estimator or ["iwae"])]
    plan = _plan(queries, log_w.shape[0], log_w.shape[1], settings)
    return await estimate_log_weights(worker, settings, log_w, plan, discrete, diagnostics)
