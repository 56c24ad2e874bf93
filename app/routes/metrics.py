from __future__ import annotations

import torch
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import MetricsDep, WorkerDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, worker: WorkerDep) -> Response:
    """Prometheus text format."""
    metrics.queue_depth.labels(worker.device).set(worker.depth)
    if worker.device.startswith("cuda"):
        metrics.cuda_memory.labels(worker.device).set(torch.cuda.memory_allocated(worker.device))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
