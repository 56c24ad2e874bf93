"""Event streams cannot take the server (issue: one client holding about 255 `/events` streams made every
request, both health checks included, a plain-text 503, and a liveness probe would then restart the service
and its jobs). Streams are capped below the request limit, and health checks are never refused."""

from __future__ import annotations

import io
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from .helpers import IMAGE, write_checkpoints
from .local_server import LocalServer

pytestmark = pytest.mark.slow


def test_streams_at_their_cap_leave_requests_and_health_checks_answered(tmp_path: Path) -> None:
    checkpoints = write_checkpoints(tmp_path / "checkpoints")
    env = {"LOGPX_LIMIT_CONCURRENCY": "8", "LOGPX_MAX_EVENT_STREAMS": "3", "LOGPX_DEVICE": "cpu"}
    with LocalServer(checkpoints, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        data = io.BytesIO()
        np.save(data, np.zeros((200, 784), dtype=np.uint8))
        long_job = {"model": "tiny", "estimators": ["iwae:64@ais:2000"], "seed": "0"}
        job = http.post("/v1/jobs", data=long_job, files={"data": ("x.npy", data.getvalue())}).json()["id"]
        with ExitStack() as held:
            for _ in range(3):  # the cap: each stream stays open while the long job runs
                stream = held.enter_context(http.stream("GET", f"/v1/jobs/{job}/events"))
                assert stream.status_code == 200
            refused = http.get(f"/v1/jobs/{job}/events")
            assert refused.status_code == 503 and refused.headers["content-type"].startswith("application/problem+json")
            assert "poll GET /v1/jobs/" in refused.json()["detail"] and refused.headers["retry-after"]
            # Requests and both health checks still answer while the streams are held.
            assert http.get("/v2/health/live").status_code == 200
            assert http.get("/v2/health/ready").status_code == 200
            assert http.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE]}).status_code == 200
        # Streams given back when their clients leave: a new one opens.
        with http.stream("GET", f"/v1/jobs/{job}/events") as again:
            assert again.status_code == 200
        http.delete(f"/v1/jobs/{job}")
