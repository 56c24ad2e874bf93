"""Dependency aliases shared by the routes.

All are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
dependency per request for what is an attribute lookup (~15% of the event loop under load)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from logpx.plan import Plan

from .certifier import Certifier
from .config import Settings
from .errors import UnsupportedMediaType
from .metrics import Metrics
from .registry import ModelEntry, ModelRegistry
from .schemas import Timing
from .worker import DeviceWorker, client_gone


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_worker(request: Request) -> DeviceWorker:
    client_gone.set(request.is_disconnected)  # the worker watches this request's connection while it waits
    return request.app.state.worker


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_certifier(request: Request) -> Certifier:
    return request.app.state.certifier


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r}: this endpoint takes application/json",
            field="Content-Type",
            limit="application/json",
        )


async def ready_model(
    name: str, request: Request, registry: Annotated[ModelRegistry, Depends(get_registry)]
) -> ModelEntry:
    """The route's model, ready to serve (404 unknown, 503 still loading or failed); the model is the
    label of the request's log line and metrics from here on."""
    entry = registry.get_ready(name)
    request.state.log.update(model=name)
    return entry


def record_request(
    request: Request, metrics: Metrics, model: str, inputs: int, plan: Plan, timing: Timing, replicates: int = 1
) -> None:
    """The access-log fields and metrics every inference route reports: inputs, the largest k, the
    log-weights drawn (the plan's cost in samples) and the task's queue and compute time."""
    cost = plan.cost(inputs, replicates)
    request.state.log.update(
        model=model,
        batch=inputs,
        k=cost.samples // max(1, inputs * replicates),
        queue_s=round(timing.queue_s, 6),
        compute_s=round(timing.compute_s, 6),
    )
    metrics.samples.labels(model).inc(cost.samples)
    metrics.queue_seconds.observe(timing.queue_s)
    metrics.compute_seconds.observe(timing.compute_s)


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
WorkerDep = Annotated[DeviceWorker, Depends(get_worker)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
CertifierDep = Annotated[Certifier, Depends(get_certifier)]
ReadyModelDep = Annotated[ModelEntry, Depends(ready_model)]
