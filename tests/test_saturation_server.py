"""What holds the server's places gives them back: event streams are capped below the request limit and
health checks are never refused (issue: one client holding about 255 `/events` streams made every request,
both health checks included, a plain-text 503); a queued request whose client has gone frees its queue place
at once (it kept it until the worker reached it, and everyone else got 503 meanwhile)."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
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
        long_job = {"model": "tiny", "estimators": ["iwae:64@ais:300"], "seed": "0"}
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


def test_a_queued_request_whose_client_left_frees_its_place(tmp_path: Path) -> None:
    checkpoints = write_checkpoints(tmp_path / "checkpoints")
    slow = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 16}, "sampler": {"name": "ais", "steps": 9000}}
    quick = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 10}}
    env = {"LOGPX_QUEUE_DEPTH": "1", "LOGPX_DEVICE": "cpu"}
    with LocalServer(checkpoints, env=env) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/models/tiny/evidence", json=slow, timeout=8.0)
        time.sleep(0.5)  # the worker has taken it: the queue is empty, one place
        with pytest.raises(httpx.TimeoutException):  # queued behind it, then its client gives up
            httpx.post(f"{server.url}/v1/models/tiny/evidence", json=slow, timeout=1.0)
        time.sleep(0.6)  # the server notices within its 0.25 s disconnect poll
        # The place is free again while the first request still runs: this one is queued, not refused.
        r = httpx.post(f"{server.url}/v1/models/tiny/evidence", json=quick, timeout=30)
        assert r.status_code == 200, r.text
        with pytest.raises(httpx.TimeoutException):
            running.result()
