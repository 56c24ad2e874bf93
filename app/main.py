"""Builds the app: settings, registry and worker in the lifespan, middleware, error handlers, routes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
import uvicorn.config
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from logpx.runtime import keep_freed_memory, set_thread_budget

from . import __version__
from .certifier import Certifier
from .config import Settings, get_settings
from .errors import register_error_handlers
from .jobs.executors import make_executor
from .jobs.runner import OPENING, JobRunner
from .jobs.store import open_store
from .metrics import Metrics
from .middleware import RequestGuard
from .registry import ModelRegistry
from .routes import certificates, comparisons, estimate, evidence, health, jobs, metrics, models, page, predict, v2
from .schemas import problem_responses
from .worker import DeviceWorker

__all__ = ["create_app", "log_config"]


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the ``logpx`` loggers: model loading (``logpx``) and one
    JSON line per request (``logpx.access``), both to stderr as bare messages."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["logpx"] = {"format": "%(message)s"}
    config["handlers"]["logpx"] = {"class": "logging.StreamHandler", "formatter": "logpx", "stream": "ext://sys.stderr"}
    config["loggers"]["logpx"] = {"handlers": ["logpx"], "level": level.upper(), "propagate": False}
    return config


STORE_RETRY_S = 30.0  # how often a service whose job store would not open tries again


async def _run_jobs(
    app: FastAPI, settings: Settings, registry: ModelRegistry, worker: DeviceWorker, metrics: Metrics
) -> None:
    """Open the job store (migrating its schema; waiting ``job_store_wait_s`` for a database still starting),
    then run jobs. A store that will not open (a read-only data directory, a database away) turns jobs off,
    not the service: evidence and the other routes are served, and the store is tried again every
    ``STORE_RETRY_S``."""
    wait = settings.job_store_wait_s
    while True:
        try:
            store = await asyncio.to_thread(open_store, settings.store_url, wait)
            break
        except Exception as exc:  # any error of opening: the file system, the driver, the migration
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            app.state.jobs_off = f"the job store could not be opened ({reason}); trying again every {STORE_RETRY_S:g} s"
            logging.getLogger("logpx").error("jobs are off: %s", app.state.jobs_off)
            wait = 0.0
            await asyncio.sleep(STORE_RETRY_S)
    pause = 2.0  # a head started beside the service takes seconds: try again soon, then every STORE_RETRY_S
    while True:  # jobs on Ray when LOGPX_RAY_ADDRESS names a cluster: off, saying why, until it answers
        try:
            executor = await asyncio.to_thread(make_executor, worker, settings)
            break
        except Exception as exc:  # a cluster away, ray not installed, a wrong address
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            app.state.jobs_off = f"the Ray cluster could not be joined ({reason}); trying again in {pause:g} s"
            logging.getLogger("logpx").error("jobs are off: %s", app.state.jobs_off)
            await asyncio.sleep(pause)
            pause = min(2 * pause, STORE_RETRY_S)
    runner = JobRunner(store, registry, worker, settings, metrics, app.state.certifier, executor)
    app.state.certifier.open(store, registry)
    app.state.jobs, app.state.runner, app.state.jobs_off = store, runner, None
    await runner.run_forever()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # At most one intra-op thread per CPU the container may use (torch would otherwise count the host's);
        # AIS passes of few chains use fewer (logpx.runtime.threads_for_rows).
        set_thread_budget(settings.torch_threads)
        keep_freed_memory()
        registry = ModelRegistry(settings.checkpoint_dir, settings.device, settings.retry_after_s)
        worker = DeviceWorker(
            registry.device,
            settings.queue_depth,
            settings.retry_after_s,
            batch_max_inputs=settings.batch_max_inputs,
            batch_delay_s=settings.batch_delay_ms / 1000,
            on_forward=lambda requests, inputs: app_metrics.batch_requests.observe(requests),
        )
        worker.start()
        app.state.registry, app.state.worker = registry, worker
        app.state.certifier = Certifier(worker, settings)
        app.state.jobs = app.state.runner = None  # until the job store opens: jobs are off, the rest is served
        app.state.jobs_off = OPENING
        app.state.event_streams = {"open": 0}  # job event streams open now (routes/jobs.py caps them)
        # Load in the background: /v2/health/live answers at once, /v2/health/ready once loading is done.
        loading = asyncio.create_task(asyncio.to_thread(registry.load_all))
        running = asyncio.create_task(_run_jobs(app, settings, registry, worker, app_metrics))
        try:
            yield
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            if app.state.runner is not None:
                await app.state.runner.stop()
                app.state.runner.executor.close()
            await app.state.certifier.stop()
            await loading
            worker.stop()
            if app.state.jobs is not None:
                app.state.jobs.close()
            if registry.device.startswith("cuda"):
                torch.cuda.empty_cache()

    app = FastAPI(
        title="logpx",
        version=__version__,
        summary="Evidence estimation for latent-variable models: ELBO, IWAE and jackknife (JVI) estimates of log p(x)",
        lifespan=lifespan,
        docs_url=None,  # served by routes/page.py from files in the package: /docs works offline
        redoc_url=None,
        # Any route may answer these: the middleware (401, 413), validation (422), lookups (404) and a
        # bug (500), always as problem+json.
        responses=problem_responses(401, 404, 413, 422, 500),
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    register_error_handlers(app)
    for module in (health, models, evidence, certificates, estimate, predict, jobs, comparisons, v2, metrics, page):
        app.include_router(module.router)
    app.mount("/static", page.static_files, name="static")
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            estimate.add_request_schema(generate_openapi())  # generated once, then cached on the app
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        api_token=settings.api_token,
        metrics=app_metrics,
        limit_concurrency=settings.limit_concurrency,
    )
    logging.getLogger("logpx").setLevel(settings.log_level.upper())
    return app
