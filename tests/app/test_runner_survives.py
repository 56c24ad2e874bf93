"""The job runner survives its store failing (issue: a full disk during a job failed the chunk's commit, then
the job's failure, and the runner's task ended for the life of the process: the job `running` forever, later
jobs `queued` forever, readiness 200). Writes are retried with backoff, then the job fails with its reason;
readiness and the metrics say the store is failing; the runner goes on with the next job."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from ..helpers import make_client, wait_ready


@pytest.fixture
def client(checkpoint_dir: Path) -> Iterator[TestClient]:
    with make_client(checkpoint_dir, job_lease_s=1.0, job_poll_s=0.05) as c:
        wait_ready(c)
        c.app.state.runner.backoff_s = (0.05, 0.05, 0.05)  # type: ignore[attr-defined]
        yield c


def _submit(client: TestClient, seed: int) -> str:
    buffer = io.BytesIO()
    np.save(buffer, (np.random.default_rng(seed).random((3, 784)) < 0.2).astype(np.float32))
    files = {"data": ("x.npy", buffer.getvalue(), "application/octet-stream")}
    r = client.post("/v1/jobs", data={"model": "tiny", "estimators": ["iwae:20"]}, files=files)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _wait(client: TestClient, job: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (status := client.get(f"/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def _store_errors(metrics: str) -> float:
    return float(re.search(r"^logpx_job_store_errors_total (\S+)$", metrics, re.MULTILINE).group(1))  # type: ignore[union-attr]


def _failing(call: Callable[..., Any], times: int) -> Callable[..., Any]:
    """``call``, failing its first ``times`` calls as a full disk would."""
    left = [times]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise OperationalError("INSERT INTO results", {}, Exception("database or disk is full"))
        return call(*args, **kwargs)

    return flaky


def test_a_store_that_fails_for_a_while_costs_retries_not_the_job(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = client.app.state.jobs  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "commit_chunk", _failing(store.commit_chunk, 2))
    assert _wait(client, _submit(client, 0))["state"] == "succeeded"
    assert _store_errors(client.get("/metrics").text) == 2


def test_a_store_that_keeps_failing_fails_the_job_and_the_runner_goes_on(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = client.app.state.jobs  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "commit_chunk", _failing(store.commit_chunk, 10**6))
    status = _wait(client, _submit(client, 1))
    assert status["state"] == "failed" and "job store failed on every retry" in status["error"], status["error"]
    assert "disk is full" in status["error"]
    monkeypatch.undo()
    assert _wait(client, _submit(client, 2))["state"] == "succeeded"  # the runner is alive
    assert client.get("/v2/health/ready").status_code == 200


def test_when_not_even_the_failure_can_be_written_the_lease_brings_the_job_back(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.jobs  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "commit_chunk", _failing(store.commit_chunk, 10**6))
    monkeypatch.setattr(store, "finish", _failing(store.finish, 10**6))
    job = _submit(client, 3)
    deadline = time.monotonic() + 20
    while (ready := client.get("/v2/health/ready")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ready.status_code == 503 and "job store is failing" in ready.json()["jobs"]
    # Four tries to commit, four to record the failure (three retries each): then the runner lets the job go.
    while _store_errors(metrics := client.get("/metrics").text) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "logpx_job_runner_healthy 0.0" in metrics and client.get(f"/v1/jobs/{job}").json()["state"] == "running"
    monkeypatch.undo()  # the disk has room again: the job's lease runs out and it is taken up from its last chunk
    assert _wait(client, job)["state"] == "succeeded"
    assert client.get("/v2/health/ready").status_code == 200
    assert "logpx_job_runner_healthy 1.0" in client.get("/metrics").text
