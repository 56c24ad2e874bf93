"""Open Inference Protocol (KServe v2) subset, so KServe and Triton HTTP clients can call the service.

Input: one tensor of shape ``[B, *input_shape]`` or ``[B, prod(input_shape)]`` (any name), ``data`` flat
or nested; ``input_shape`` is the model's (``[28, 28]`` for the MNIST models).
Request ``parameters``: ``estimator``, ``k``, ``order``, ``seed``, ``binarize``, ``scale``.
Outputs: ``log_px``, ``std_err`` and each diagnostic, ``FP64`` of shape ``[B]``; ``verdict`` (``BYTES``: reliable,
caution or unreliable), with every verdict's reasons and advice in the response's ``parameters``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import torch
from fastapi import APIRouter, Depends, Request

from logpx.plan import Plan

from .. import __version__
from ..deps import MetricsDep, ReadyModelDep, RegistryDep, SettingsDep, WorkerDep, record_request, require_json
from ..errors import InvalidInput
from ..inputs import inputs_from_json, parse_estimator
from ..json_route import JSONRoute
from ..limits import check_plan
from ..plans import entry_in
from ..schemas import InferOutput, InferRequest, InferResponse, problem_responses
from ..usecases.evidence import evidence

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=JSONRoute)


def _decode(
    data: list[Any], batch: int, size: int, scale: str, input_shape: tuple[int, ...], domain: str
) -> torch.Tensor:
    """The tensor's values as ``[B, D]``, off the event loop (a body of megabytes takes a while)."""
    flat = _flatten(data)
    if len(flat) != batch * size:
        raise InvalidInput(f"data holds {len(flat)} values, shape says {batch * size}", field="inputs[0].data")
    return inputs_from_json(
        [flat[i * size : (i + 1) * size] for i in range(batch)], scale, input_shape, "inputs[0].data", domain
    )


def _flatten(data: list[Any]) -> list[float]:
    out: list[float] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


@router.get("")
async def server_metadata() -> dict[str, object]:
    return {"name": "logpx", "version": __version__, "extensions": []}


@router.get("/models/{name}/ready", responses=problem_responses(404, 503))
async def model_ready(name: str, registry: RegistryDep) -> dict[str, object]:
    registry.get_ready(name)
    return {"name": name, "ready": True}


# What infer answers, in order; the model metadata declares the same.
DIAGNOSTIC_OUTPUTS = ("ess", "khat", "delta_bias", "jackknife_var")
OUTPUTS = (("log_px", "FP64"), ("verdict", "BYTES"), ("std_err", "FP64"), *((n, "FP64") for n in DIAGNOSTIC_OUTPUTS))


@router.get("/models/{name}", responses=problem_responses(404))
async def model_metadata(name: str, registry: RegistryDep) -> dict[str, object]:
    e = registry.get(name)
    return {
        "name": name,
        "versions": [e.checkpoint.sha256[:12]] if e.checkpoint else [],
        "platform": "pytorch",
        "inputs": [
            {
                "name": "inputs",
                "datatype": "FP32",
                "shape": [-1, *e.checkpoint.model.input_shape] if e.checkpoint else [],
            }
        ],
        "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in OUTPUTS],
    }


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=problem_responses(401, 404, 413, 415, 422, 503, 504),
    dependencies=[Depends(require_json)],
)
async def infer(
    name: str,
    body: InferRequest,
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> InferResponse:
    params = body.parameters
    tensor = body.inputs[0]
    input_shape = entry.model.input_shape
    size = math.prod(input_shape)
    allowed = ([-1, size], [-1, *input_shape])
    if len(tensor.shape) < 2 or tensor.shape[1:] not in (a[1:] for a in allowed) or tensor.shape[0] < 1:
        raise InvalidInput(
            f"shape {tensor.shape} must be [B, {size}] or [B, {', '.join(map(str, input_shape))}]",
            field="inputs[0].shape",
            limit=allowed[-1],
        )
    batch = tensor.shape[0]
    spec = parse_estimator({"name": params.estimator, "k": params.k, "order": params.order}, "parameters")
    plan = Plan((entry_in(spec, params.sampler, "parameters"),))
    # The cheap check first: the declared batch x k against the budget, before a value is touched.
    check_plan(settings, plan, batch, ["parameters"], inputs_field="inputs[0].shape", sampler_fields=["sampler"])
    scale = params.scale or ("byte" if tensor.datatype == "UINT8" else "unit")
    x = await asyncio.to_thread(_decode, tensor.data, batch, size, scale, input_shape, entry.domain)
    seed = params.seed
    out = await evidence(entry, worker, settings, x, plan.entries[0], seed, params.binarize, True)
    record_request(request, metrics, name, batch, plan, out.timing)
    columns = {
        "log_px": [r.log_px for r in out.results],
        "verdict": [r.verdict.level for r in out.results],
        "std_err": [r.std_err for r in out.results],
        **{
            field: [getattr(r.diagnostics, field) if r.diagnostics else None for r in out.results]
            for field in DIAGNOSTIC_OUTPUTS
        },
    }
    outputs = [InferOutput(name=n, shape=[batch], datatype=t, data=columns[n]) for n, t in OUTPUTS]
    return InferResponse(
        model_name=name,
        model_version=entry.checkpoint.sha256[:12] if entry.checkpoint else None,
        id=body.id,
        parameters={
            "estimator": out.estimator.model_dump(),
            "binarization": out.binarization.model_dump(),
            "seed": seed,
            "verdicts": [r.verdict.model_dump() for r in out.results],
        },
        outputs=outputs,
    )
