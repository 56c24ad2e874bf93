from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from .. import service
from ..deps import MetricsDep, RegistryDep, SettingsDep, WorkerDep, record_request, require_json
from ..inputs import decode_inputs, read_uploads
from ..json_route import JSONRoute
from ..schemas import PredictRequest, PredictResponse, problem_responses

router = APIRouter(prefix="/v1/models", tags=["predict"], route_class=JSONRoute)
ERRORS = problem_responses(401, 404, 413, 415, 422, 503, 504)


@router.post("/{name}/predict", response_model=PredictResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def predict(
    name: str,
    body: PredictRequest,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> PredictResponse:
    """Bayesian classifiers: predictive probabilities, entropy split, and with labels log p(y | x, D)."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape)
    out = await service.predict(
        entry, worker, settings, x, body.labels, body.k, body.order, body.seed, body.diagnostics
    )
    record_request(
        request, metrics, name, x.shape[0], body.k, out.timing.queue_s, out.timing.compute_s, x.shape[0] * body.k
    )
    return out


@router.post("/{name}/predict/images", response_model=PredictResponse, responses=ERRORS)
async def predict_images(
    name: str,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    files: Annotated[list[UploadFile], File(description="PNG or JPEG, greyscale, of the model's input_shape")],
    labels: Annotated[list[int] | None, Form(description="one per file, in order")] = None,
    k: Annotated[int, Form(ge=2)] = 100,
    order: Annotated[int, Form(ge=1)] = 1,
    seed: Annotated[int, Form(ge=0, lt=2**63)] = 0,
    diagnostics: Annotated[bool, Form()] = True,
) -> PredictResponse:
    """The same as ``predict``, with image files as a multipart upload (field ``files``, repeated)."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    x = await read_uploads(files, entry.model.input_shape)
    out = await service.predict(entry, worker, settings, x, labels, k, order, seed, diagnostics)
    record_request(request, metrics, name, x.shape[0], k, out.timing.queue_s, out.timing.compute_s, x.shape[0] * k)
    return out
