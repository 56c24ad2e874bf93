from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from logpx.estimators import DEFAULT_SPEC
from logpx.plan import AIS, EstimatorSpec, Plan

from ..deps import CertifierDep, MetricsDep, ReadyModelDep, SettingsDep, WorkerDep, record_request, require_json
from ..errors import InvalidInput
from ..inputs import decode_inputs, parse_estimator, parse_sampler, read_uploads
from ..json_route import JSONRoute
from ..limits import check_bdmc, check_plan
from ..plans import entry_in, plan_in, sampler_in
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
from ..usecases import bdmc as bdmc_case
from ..usecases import evidence as evidence_case
from ..usecases import posterior as posterior_case

router = APIRouter(prefix="/v1/models", tags=["evidence"], route_class=JSONRoute)
# 409: `steps: auto` with no certificate of the model yet (its certification is started; app/certifier.py).
ERRORS = problem_responses(401, 404, 409, 413, 415, 422, 503, 504)


@router.post(
    "/{name}/evidence", response_model=EvidenceResponse, responses=ERRORS, dependencies=[Depends(require_json)]
)
async def evidence(
    body: EvidenceRequest,
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    certifier: CertifierDep,
) -> EvidenceResponse:
    """Estimate log p(x) for a JSON batch of inputs, with standard errors and diagnostics."""
    # The inputs first: a wrong one is a 422 before ``steps: auto`` can start a certification.
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape, domain=entry.domain)
    plan = certifier.plan(entry, plan_in([("estimator", body.estimator, body.sampler)]), ["sampler"])
    check_plan(settings, plan, len(body.inputs), ["estimator"], sampler_fields=["sampler"])
    out = await evidence_case.evidence(
        entry,
        worker,
        settings,
        x,
        plan.entries[0],
        body.seed,
        body.binarize,
        body.diagnostics,
        certifier.known(entry),
    )
    record_request(request, metrics, entry.name, x.shape[0], plan, out.timing)
    return out


@router.post("/{name}/evidence/images", response_model=EvidenceResponse, responses=ERRORS)
async def evidence_images(
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    certifier: CertifierDep,
    files: Annotated[list[UploadFile], File(description="PNG or JPEG, greyscale, of the model's input_shape")],
    estimator: Annotated[str, Form(pattern="^(elbo|iwae|jvi)$")] = DEFAULT_SPEC.name,
    k: Annotated[int, Form(ge=2)] = DEFAULT_SPEC.k,
    order: Annotated[int | None, Form(ge=1)] = None,
    seed: Annotated[int, Form(ge=0, lt=2**63)] = 0,
    binarize: Annotated[Binarize | None, Form()] = None,
    diagnostics: Annotated[bool, Form()] = True,
    sampler: Annotated[str, Form(description="importance, or ais: k annealed chains")] = "importance",
    steps: Annotated[
        str | None,
        Form(pattern="^([0-9]{1,12}|auto)$", description="AIS temperatures (default 1000), or auto (certified)"),
    ] = None,
    leapfrog: Annotated[int | None, Form(ge=1, le=100, description="AIS leapfrog steps (default 10)")] = None,
    tolerance: Annotated[
        float | None, Form(gt=0, le=5, description="AIS with steps auto: nats of BDMC gap (default 0.1)")
    ] = None,
) -> EvidenceResponse:
    """The same as ``evidence``, with image files as a multipart upload (field ``files``, repeated)."""
    spec = parse_estimator({"name": estimator, "k": k, **({"order": order} if order is not None else {})}, "")
    steps_in = int(steps) if steps is not None and steps.isdigit() else steps  # the form's text: a number or auto
    sampler_in = parse_sampler({"name": sampler, "steps": steps_in, "leapfrog": leapfrog, "tolerance": tolerance}, "")
    x = await read_uploads(files, entry.model.input_shape)  # before ``steps: auto`` can start a certification
    plan = certifier.plan(entry, Plan((entry_in(spec, sampler_in, "", sampler_field=""),)), ["sampler"])
    check_plan(settings, plan, len(files), [""], inputs_field="files")
    out = await evidence_case.evidence(
        entry, worker, settings, x, plan.entries[0], seed, binarize, diagnostics, certifier.known(entry)
    )
    record_request(request, metrics, entry.name, x.shape[0], plan, out.timing)
    return out


@router.post("/{name}/compare", response_model=CompareResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def compare(
    body: CompareRequest,
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    certifier: CertifierDep,
) -> CompareResponse:
    """Several estimators on the same draws (common random numbers), over replicates, against a reference."""
    if body.replicates > settings.max_replicates:
        raise InvalidInput(
            f"replicates={body.replicates} is over the limit {settings.max_replicates}",
            field="replicates",
            limit=settings.max_replicates,
        )
    items = [(f"estimators[{i}]", e, e.sampler) for i, e in enumerate(body.estimators)]
    items += [("reference", body.reference, body.reference.sampler)] if body.reference else []
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape, domain=entry.domain)  # then auto
    plan = certifier.plan(entry, plan_in(items), [f"{f}.sampler" for f, _, _ in items])
    check_plan(settings, plan, len(body.inputs), [f for f, _, _ in items], replicates=body.replicates)
    out = await evidence_case.compare(
        entry,
        worker,
        settings,
        x,
        plan,
        body.replicates,
        body.seed,
        body.binarize,
        body.reference is not None,
        certifier.known(entry),
    )
    record_request(request, metrics, entry.name, x.shape[0], plan, out.timing, body.replicates)
    return out


@router.post("/{name}/bdmc", response_model=BDMCResponse, responses=ERRORS, dependencies=[Depends(require_json)])
async def bdmc(
    body: BDMCRequest,
    request: Request,
    entry: ReadyModelDep,
    worker: WorkerDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> BDMCResponse:
    """Certify an AIS setting: forward and reverse AIS on inputs simulated from the model bracket log p(x)."""
    sampler = sampler_in(body.sampler, "sampler")
    if not isinstance(sampler, AIS):
        raise InvalidInput(
            "BDMC certifies an AIS setting: sampler.name must be 'ais'", field="sampler.name", limit="ais"
        )
    check_bdmc(settings, sampler, body.num_inputs, body.k)
    out = await bdmc_case.bdmc(entry, worker, settings, sampler, body.num_inputs, body.k, body.seed)
    plan = Plan.of(EstimatorSpec("iwae", body.k), sampler=sampler)
    record_request(request, metrics, entry.name, body.num_inputs, plan, out.timing, replicates=2)
    return out


@router.post(
    "/{name}/posterior", response_model=PosteriorResponse, responses=ERRORS, dependencies=[Depends(require_json)]
)
async def posterior(
    body: PosteriorRequest, entry: ReadyModelDep, worker: WorkerDep, settings: SettingsDep
) -> PosteriorResponse:
    """A 2-D latent model's posterior p(z | x) for one input on a grid, with q(z | x)'s mean and covariance."""
    x = await decode_inputs(body.inputs, body.scale, entry.model.input_shape, domain=entry.domain)
    return await posterior_case.posterior(entry, worker, settings, x, body)
