"""Jobs on a Ray cluster (docs/deploy.md, "Jobs on Ray"): a two-node cluster on this machine (two `ray start`,
one CPU each), a job over 300 inputs through the service, chunks from both nodes in its provenance, and rows
equal to the same job on the in-process executor, value for value; the same with the second node SIGKILLed
mid-job, and with the service SIGKILLed mid-job and started again on the same store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from .helpers import shipped
from .local_server import LocalServer, free_port

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'logpx[ray]'")
pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))
# Node deaths are noticed within about 3 s instead of Ray's default 15 s or so.
FAST_HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4"}
EXACT = {"LOGPX_TORCH_THREADS": "1", "LOGPX_RAY_ACTOR_THREADS": "1", "LOGPX_JOB_CHUNK_EVALS": "1000"}


def _node(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args],
        env={**os.environ, **FAST_HEALTH, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the raylet and its workers die with it
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str]]]:
    """Two nodes; yields the address, the second node and the environment every Ray process of the test (the
    service included) runs with: a short RAY_TMPDIR (Ray's Unix socket paths are limited to 107 bytes) and a HOME
    of its own (a ~/.ray/auth_token left by another Ray on this machine would be sent to this cluster, which
    has none)."""
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    (Path(tmp) / "home").mkdir()
    env = {"RAY_TMPDIR": tmp, "HOME": str(Path(tmp) / "home")}
    address = f"127.0.0.1:{port}"
    procs = [_node(["--head", "--port", str(port), "--include-dashboard", "false"], env)]
    try:
        deadline = time.monotonic() + 90
        while True:
            status = subprocess.run(
                [RAY, "status", "--address", address], env={**os.environ, **env}, capture_output=True, text=True
            )
            if status.stdout.count("node_") >= len(procs):
                if len(procs) == 2:
                    break
                procs.append(_node(["--address", address], env))
            assert time.monotonic() < deadline, status.stdout[-1000:] + status.stderr[-1000:]
            time.sleep(1)
        yield address, procs[1], env
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _inputs() -> list[list[float]]:
    return np.random.default_rng(0).random((300, 784)).round(3).tolist()


def _body() -> dict:  # type: ignore[type-arg]
    estimators = [{"name": "iwae", "k": 200}, {"name": "elbo", "k": 200}]
    return {"model": "vae1-iwae50", "inputs": _inputs(), "estimators": estimators, "seed": 3}


def _job(url: str, kill: subprocess.Popen[bytes] | None = None) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    job = httpx.post(f"{url}/v1/jobs", json=_body(), timeout=60).json()
    return _wait(url, job["id"], kill)


def _wait(url: str, job_id: str, kill: subprocess.Popen[bytes] | None = None) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 240
    while True:
        status = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if kill is not None and status["progress"]["done"] >= 60 and kill.poll() is None:
            os.killpg(kill.pid, signal.SIGKILL)  # the second node dies mid-job: its raylet, its actor
        if status["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    lines = httpx.get(f"{url}/v1/jobs/{job_id}/results", timeout=30).text.splitlines()
    return status, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shipped(tmp_path_factory.mktemp("checkpoints"), "vae1-iwae50")


@pytest.fixture(scope="module")
def in_process(checkpoints: Path) -> list[dict]:  # type: ignore[type-arg]
    with LocalServer(checkpoints, env={**EXACT, "LOGPX_DEVICE": "cpu"}) as server:
        status, rows = _job(server.url)
    assert status["state"] == "succeeded" and status["runs_on"]["executor"] == "in-process", status
    return rows


# One cluster for both, in this order: the second test kills its second node.
@pytest.mark.parametrize("kill_a_node", [False, True], ids=["two-nodes", "node-killed"])
def test_a_job_runs_on_both_nodes_with_the_same_rows(cluster, checkpoints, in_process, kill_a_node: bool) -> None:  # type: ignore[no-untyped-def]
    address, worker, ray_env = cluster
    env = {**ray_env, **EXACT, "LOGPX_DEVICE": "cpu", "LOGPX_RAY_ADDRESS": address, "LOGPX_RAY_ACTORS": "2",
           "LOGPX_RAY_ACTOR_CPUS": "0.5"}  # fmt: skip
    with LocalServer(checkpoints, env=env) as server:
        status, rows = _job(server.url, kill=worker if kill_a_node else None)
    assert status["state"] == "succeeded", status["error"]
    assert status["runs_on"]["executor"] == "ray", status["runs_on"]
    nodes = {p["node"] for p in status["provenance"]}
    assert len(nodes) == 2, status["provenance"]  # chunks ran on both nodes (before the kill, in that case)
    assert [r["index"] for r in rows] == list(range(300))  # every input once
    assert rows == in_process, list(_diff(rows, in_process))[:5]  # value for value, wherever each chunk ran


def test_a_service_killed_mid_job_resumes_it_on_ray(cluster, checkpoints, in_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the service mid-job and start it again on the same store: the job resumes from its last
    committed chunk on the Ray actors and its rows are the in-process run's."""
    address, _, ray_env = cluster  # its second node is dead by now: one node is left
    env = {**ray_env, **EXACT, "LOGPX_DEVICE": "cpu", "LOGPX_RAY_ADDRESS": address, "LOGPX_RAY_ACTORS": "2",
           "LOGPX_RAY_ACTOR_CPUS": "0.5", "LOGPX_DATA_DIR": str(tmp_path / "data"), "LOGPX_JOB_LEASE_S": "2",
           "LOGPX_JOB_POLL_S": "0.2"}  # fmt: skip
    with LocalServer(checkpoints, env=env) as server:
        job = httpx.post(f"{server.url}/v1/jobs", json=_body(), timeout=60).json()
        while httpx.get(f"{server.url}/v1/jobs/{job['id']}", timeout=30).json()["progress"]["done"] < 60:
            time.sleep(0.2)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    with LocalServer(checkpoints, env=env) as server:
        status, rows = _wait(server.url, job["id"])
    assert status["state"] == "succeeded", status["error"]
    assert [r["index"] for r in rows] == list(range(300))  # committed once each, across the kill
    assert rows == in_process, list(_diff(rows, in_process))[:5]


def _diff(a, b, path=""):  # type: ignore[no-untyped-def]
    """Where two rows differ, for the assertion's message."""
    if isinstance(a, dict):
        for k in a:
            yield from _diff(a[k], b.get(k), f"{path}.{k}")
    elif isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b
