from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import RegistryDep
from ..jobs.runner import OPENING
from ..schemas import Health

router = APIRouter(prefix="/v2/health", tags=["health"])


@router.get("/live", response_model=Health)
async def live() -> Health:
    """200 while the process runs; touches no model."""
    return Health(status="live")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(registry: RegistryDep, request: Request) -> JSONResponse:
    """200 once every checkpoint has been tried and at least one is loaded, on its device and warmed up,
    and while the job runner runs and its store answers (``jobs`` says what is wrong otherwise)."""
    runner = request.app.state.runner
    # A runner whose store fails is not ready (a replica that will not run jobs should not take them); a store
    # that would not open at all turns jobs off but leaves everything else served, and says so.
    jobs = runner.health() if runner is not None else request.app.state.jobs_off
    ok = registry.ready and (jobs is None if runner is not None else jobs != OPENING)
    body = Health(
        status="ready" if ok else "not ready", models={e.name: e.status for e in registry.entries()}, jobs=jobs
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
