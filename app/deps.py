"""Dependency aliases shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .config import Settings
from .metrics import Metrics
from .registry import ModelRegistry
from .worker import DeviceWorker


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_worker(request: Request) -> DeviceWorker:
    return request.app.state.worker


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
WorkerDep = Annotated[DeviceWorker, Depends(get_worker)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
