"""Dependency aliases shared by the routes.

All are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
dependency per request for what is an attribute lookup (~15% of the event loop under load)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .config import Settings
from .errors import UnsupportedMediaType
from .metrics import Metrics
from .registry import ModelRegistry
from .worker import DeviceWorker, client_gone


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_worker(request: Request) -> DeviceWorker:
    client_gone.set(request.is_disconnected)  # the worker watches this request's connection while it waits
    return request.app.state.worker


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


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


def record_request(
    request: Request, metrics: Metrics, model: str, batch: int, k: int, queue_s: float, compute_s: float, samples: int
) -> None:
    """The access-log fields and metrics every inference route reports."""
    request.state.log.update(model=model, batch=batch, k=k, queue_s=round(queue_s, 6), compute_s=round(compute_s, 6))
    metrics.samples.labels(model).inc(samples)
    metrics.queue_seconds.observe(queue_s)
    metrics.compute_seconds.observe(compute_s)


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
WorkerDep = Annotated[DeviceWorker, Depends(get_worker)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
