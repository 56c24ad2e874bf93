from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from logpx.estimators import DEFAULT_SPEC

from .. import service
from ..deps import MetricsDep, RegistryDep, SettingsDep, WorkerDep, record_request, require_json
from ..inputs import decode_inputs, parse_estimator, parse_sampler, read_uploads
from ..json_route import JSONRoute
from ..schemas import (
    BDMCRequest,
    BDMCResponse,
    Binarize,
    CompareRequest,
    CompareResponse,
    EvidenceRequest,
    EvidenceResponse,
    PosteriorRequest,
    PosteriorResponse,
    problem_responses,
)

router = APIRouter(prefix="/v1/models", tags=["evidence"], route_class=JSONRoute)
ERRORS = problem_responses(401, 404, 413, 415, 422, 503, 504)


@router.post(
    "/{name}/evidence", response_model=EvidenceResponse, responses=ERRORS, dependencies=[Depends(require_json)]
)
async def evidence(
    name: str,
    body: EvidenceRequest,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> EvidenceResponse:
    """Estimate log p(x) for a JSON batch of inputs, with standard errors and diagnostics."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape)
    out = await service.evidence(
        entry, worker, settings, x, body.estimator, body.seed, body.binarize, body.diagnostics, body.sampler
    )
    record_request(
        request,
        metrics,
        name,
        x.shape[0],
        body.estimator.k,
        out.timing.queue_s,
        out.timing.compute_s,
        x.shape[0] * body.estimator.k,
    )
    return out


@router.post("/{name}/evidence/images", response_model=EvidenceResponse, responses=ERRORS)
async def evidence_images(
    name: str,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    files: Annotated[list[UploadFile], File(description="PNG or JPEG, greyscale, of the model's input_shape")],
    estimator: Annotated[str, Form(pattern="^(elbo|iwae|jvi)$")] = DEFAULT_SPEC.name,
    k: Annotated[int, Form(ge=2)] = DEFAULT_SPEC.k,
    order: Annotated[int | None, Form(ge=1)] = None,
    seed: Annotated[int, Form(ge=0, lt=2**63)] = 0,
    binarize: Annotated[Binarize | None, Form()] = None,
    diagnostics: Annotated[bool, Form()] = True,
    sampler: Annotated[Literal["importance", "ais"], Form(description="ais: k annealed chains")] = "importance",
    steps: Annotated[int | None, Form(ge=1, description="AIS temperatures (default 1000)")] = None,
    leapfrog: Annotated[int | None, Form(ge=1, le=100, description="AIS leapfrog steps (default 10)")] = None,
) -> EvidenceResponse:
    """The same as ``evidence``, with image files as a multipart upload (field ``files``, repeated)."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    spec = parse_estimator({"name": estimator, "k": k, **({"order": order} if order is not None else {})}, "")
    service.check_limits(settings, len(files), [("", spec)], inputs_field="files")
    x = await read_uploads(files, entry.model.input_shape)
    sampler_in = parse_sampler({"name": sampler, "steps": steps, "leapfrog": leapfrog}, "")
    out = await service.evidence(
        entry, worker, settings, x, spec, seed, binarize, diagnostics, sampler_in, estimator_field=""
    )
    record_request(request, metrics, name, x.shape[0], k, out.timing.queue_s, out.timing.compute_s, x.shape[0] * k)
    return out


@router.post("/{name}/compare", response_model=CompareResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def compare(
    name: str,
    body: CompareRequest,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> CompareResponse:
    """Several estimators on the same draws (common random numbers), over replicates, against a reference."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape)
    out = await service.compare(entry, worker, settings, x, body)
    k_max = max(e.k for e in body.estimators + ([body.reference] if body.reference else []))
    record_request(
        request,
        metrics,
        name,
        x.shape[0],
        k_max,
        out.timing.queue_s,
        out.timing.compute_s,
        x.shape[0] * k_max * body.replicates,
    )
    return out


@router.post("/{name}/bdmc", response_model=BDMCResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def bdmc(
    name: str,
    body: BDMCRequest,
    request: Request,
    registry: RegistryDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> BDMCResponse:
    """Certify an AIS setting: forward and reverse AIS on inputs simulated from the model bracket log p(x)."""
    entry = registry.get_ready(name)  # the model label of logs and metrics only once the name is known
    request.state.log.update(model=name)
    out = await service.bdmc(entry, worker, settings, body)
    record_request(
        request,
        metrics,
        name,
        body.num_inputs,
        body.k,
        out.timing.queue_s,
        out.timing.compute_s,
        2 * body.num_inputs * body.k,
    )
    return out


@router.post(
    "/{name}/posterior", response_model=PosteriorResponse, responses=ERRORS, dependencies=[Depends(require_json)]
)
async def posterior(
    name: str, body: PosteriorRequest, request: Request, registry: RegistryDep, worker: WorkerDep, settings: SettingsDep
) -> PosteriorResponse:
    """A 2-D latent model's posterior p(z | x) for one input on a grid, with q(z | x)'s mean and covariance."""
    entry = registry.get_ready(name)
    request.state.log.update(model=name)
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape)
    return await service.posterior(entry, worker, settings, x, body)
