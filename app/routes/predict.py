from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from logpx.plan import Plan

from ..config import Settings
from ..deps import MetricsDep, ReadyModelDep, SettingsDep, WorkerDep, record_request, require_json
from ..errors import InvalidInput
from ..inputs import decode_inputs, read_uploads
from ..json_route import JSONRoute
from ..limits import check_plan
from ..plans import entry_in
from ..schemas import EstimatorIn, PredictRequest, PredictResponse, problem_responses
from ..usecases.predict import predict as run_predict

router = APIRouter(prefix="/v1/models", tags=["predict"], route_class=JSONRoute)
ERRORS = problem_responses(401, 404, 413, 415, 422, 503, 504)


def _plan(settings: Settings, k: int, order: int, inputs: int, inputs_field: str) -> Plan:
    """The weight draws' estimators as a plan (a JVI of ``order`` on k draws; IWAE is its first term),
    checked against the limits."""
    if order >= k:
        raise InvalidInput(f"order={order} must be below k={k}", field="order", limit=k - 1)
    plan = Plan((entry_in(EstimatorIn(name="jvi", k=k, order=order), None, ""),))
    check_plan(settings, plan, inputs, [""], inputs_field=inputs_field)
    return plan


@router.post("/{name}/predict", response_model=PredictResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def predict(
    body: PredictRequest,
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> PredictResponse:
    """Bayesian classifiers: predictive probabilities, entropy split, and with labels log p(y | x, D)."""
    plan = _plan(settings, body.k, body.order, len(body.inputs), "inputs")
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape, domain=entry.domain)
    out = await run_predict(entry, worker, settings, x, body.labels, plan.entries[0].spec, body.seed, body.diagnostics)
    record_request(request, metrics, entry.name, x.shape[0], plan, out.timing)
    return out


@router.post("/{name}/predict/images", response_model=PredictResponse, responses=ERRORS)
async def predict_images(
    request: Request,
    entry: ReadyModelDep,
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
    plan = _plan(settings, k, order, len(files), "files")
    x = await read_uploads(files, entry.model.input_shape)
    out = await run_predict(entry, worker, settings, x, labels, plan.entries[0].spec, seed, diagnostics)
    record_request(request, metrics, entry.name, x.shape[0], plan, out.timing)
    return out
