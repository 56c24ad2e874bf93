"""AIS certificates of a model: certify a setting for a tolerance (``steps: auto`` then runs it), and list
what is known and running."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response

from .. import presenter
from ..deps import CertifierDep, ReadyModelDep, require_json
from ..json_route import JSONRoute
from ..schemas import CertificatesResponse, CertifyRequest, CertifyResponse, problem_responses
from ..usecases import latent_model

router = APIRouter(prefix="/v1/models", tags=["certificates"], route_class=JSONRoute)


@router.post(
    "/{name}/certify",
    response_model=CertifyResponse,
    responses={
        **problem_responses(401, 404, 415, 422, 503),
        202: {"model": CertifyResponse, "description": "Certifying; poll the certificates"},
    },
    dependencies=[Depends(require_json)],
)
async def certify(
    body: CertifyRequest, entry: ReadyModelDep, certifier: CertifierDep, response: Response
) -> CertifyResponse:
    """The fewest AIS temperatures whose BDMC gap on data simulated from the model stays under ``tolerance``
    nats (95% one-sided). A stored certificate that meets it answers at once (200); otherwise the search
    starts on the device worker below interactive requests (202; poll ``GET .../certificates``)."""
    latent_model(entry)
    best = certifier.best(entry, body)
    if best is not None:
        return certifier.finished(entry, body, best)
    run = certifier.start(entry, body)
    if run.status == "running":
        response.status_code = 202
        response.headers["Location"] = f"/v1/models/{entry.name}/certificates"
    return certifier.response(run)


@router.get("/{name}/certificates", response_model=CertificatesResponse, responses=problem_responses(401, 404, 503))
async def certificates(entry: ReadyModelDep, certifier: CertifierDep) -> CertificatesResponse:
    """Every certificate of the served checkpoint file (a changed file has none), newest last, and the
    certifications asked of it (with a job store, on any replica; without one, on this process)."""
    assert entry.checkpoint is not None
    runs = await asyncio.to_thread(certifier.runs, entry)  # reads the job store: off the event loop
    return CertificatesResponse(
        model=entry.name,
        checkpoint=entry.checkpoint.sha256,
        certificates=[presenter.certificate_out(c) for c in certifier.known(entry)],
        certifications=[certifier.response(r) for r in runs],
    )
