"""Jobs against real ``logpx serve`` processes: the CLI's job commands end to end, and jobs that survive the
server: a real ``logpx serve`` killed with SIGKILL mid-job resumes the job when it starts
again, and with two replicas on one PostgreSQL database the survivor finishes the job of the one that died.
Either way the rows equal an uninterrupted run's with the same seed, row for row, none lost or repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from .helpers import shipped
from .local_server import LocalServer
from .postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
N = 24
JOB = {
    "model": "vae1-iwae50",
    "inputs": (np.random.default_rng(0).random((N, 784)) < 0.25).astype(int).tolist(),
    "labels": list(range(N)),
    "estimators": [
        {"name": "iwae", "k": 200},
        {"name": "jvi", "k": 200, "order": 1},
        {"name": "iwae", "k": 8, "sampler": {"name": "ais", "steps": 20, "leapfrog": 5}},
    ],
    "seed": 11,
}
# One input per chunk (200 + 8 x 20 x 6 = 1,160 evaluations), a short lease so that a dead holder's job is
# taken over within seconds, and nothing from the checkpoints but the model the job uses.
ENV = {"LOGPX_JOB_CHUNK_EVALS": "1160", "LOGPX_JOB_LEASE_S": "2", "LOGPX_JOB_POLL_S": "0.2", "LOGPX_DEVICE": "cpu"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shipped(tmp_path_factory.mktemp("checkpoints"), "vae1-iwae50", "vae1-elbo")


def _status(url: str, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()


def _wait(url: str, job_id: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not until(status := _status(url, job_id)):
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return status


def _rows(url: str, job_id: str) -> list[str]:
    return httpx.get(f"{url}/v1/jobs/{job_id}/results", timeout=30).text.splitlines()


def _kill(server: LocalServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()


def _uninterrupted_equals(url: str, interrupted: str) -> None:
    again = httpx.post(f"{url}/v1/jobs", json=JOB, timeout=30).json()["id"]
    _wait(url, again, lambda s: s["state"] == "succeeded")
    rows = _rows(url, interrupted)
    assert [int(r.split('"index": ')[1].split(",")[0]) for r in rows] == list(range(N))  # none lost or repeated
    assert rows == _rows(url, again)


def test_sigkill_mid_job_then_restart_resumes_from_the_last_chunk(checkpoints: Path, tmp_path: Path) -> None:
    env = {**ENV, "LOGPX_DATA_DIR": str(tmp_path / "data")}
    with LocalServer(checkpoints, env=env) as server:
        job = httpx.post(f"{server.url}/v1/jobs", json=JOB, timeout=30).json()["id"]
        before = _wait(server.url, job, lambda s: s["progress"]["done"] >= 3)["progress"]["done"]
        _kill(server)
    assert before < N, "the job finished before the kill: make it longer"
    with LocalServer(checkpoints, env=env) as server:
        done = _wait(server.url, job, lambda s: s["state"] == "succeeded")
        assert done["progress"]["done"] == N and done["summary"][0]["count"] == N
        _uninterrupted_equals(server.url, job)


def test_a_comparison_killed_mid_run_finishes_after_a_restart_with_the_same_table(
    checkpoints: Path, tmp_path: Path
) -> None:
    """A comparison is its models' jobs: SIGKILL the server mid-way, start it again, and the comparison
    finishes with every input once per model, its per-input table equal to an uninterrupted comparison's."""
    comparison = {**{k: v for k, v in JOB.items() if k != "model"}, "models": ["vae1-iwae50", "vae1-elbo"]}
    env = {**ENV, "LOGPX_DATA_DIR": str(tmp_path / "data")}

    def state(url: str, cid: str) -> dict[str, Any]:
        return httpx.get(f"{url}/v1/comparisons/{cid}", timeout=30).json()

    def finish(url: str, cid: str) -> dict[str, Any]:
        deadline = time.monotonic() + 180
        while (out := state(url, cid))["state"] != "succeeded":
            assert out["state"] in ("queued", "running") and time.monotonic() < deadline, out["state"]
            time.sleep(0.1)
        return out

    with LocalServer(checkpoints, env=env) as server:
        cid = httpx.post(f"{server.url}/v1/comparisons", json=comparison, timeout=30).json()["id"]
        first = state(server.url, cid)["jobs"][0]["id"]
        before = _wait(server.url, first, lambda s: s["progress"]["done"] >= 3)["progress"]["done"]
        _kill(server)
    assert before < N, "the first model finished before the kill: make it longer"
    with LocalServer(checkpoints, env=env) as server:
        out = finish(server.url, cid)
        assert out["done"] == N and all(s["count"] == N for s in out["standings"])
        for job in out["jobs"]:
            assert [int(r.split('"index": ')[1].split(",")[0]) for r in _rows(server.url, job["id"])] == list(range(N))
        again = httpx.post(f"{server.url}/v1/comparisons", json=comparison, timeout=30).json()["id"]
        finish(server.url, again)
        table = httpx.get(f"{server.url}/v1/comparisons/{cid}/results", timeout=30).text
        assert table == httpx.get(f"{server.url}/v1/comparisons/{again}/results", timeout=30).text
        assert len(table.splitlines()) == N + 1


def test_two_replicas_on_postgres_the_survivor_finishes(checkpoints: Path, postgres: PostgresServer) -> None:
    env = {**ENV, "LOGPX_DATABASE_URL": postgres.new_database()}
    with LocalServer(checkpoints, env=env) as first:
        job = httpx.post(f"{first.url}/v1/jobs", json=JOB, timeout=30).json()["id"]
        _wait(first.url, job, lambda s: s["progress"]["done"] >= 3)
        with LocalServer(checkpoints, env=env) as second:
            assert _status(second.url, job)["id"] == job  # any replica answers for any job
            _kill(first)
            done = _wait(second.url, job, lambda s: s["state"] == "succeeded")
            assert done["progress"]["done"] == N
            _uninterrupted_equals(second.url, job)


def test_the_job_commands_end_to_end(checkpoints: Path, tmp_path: Path) -> None:
    """As a new user would: submit an IDX data set with labels and watch it, then status, results and list."""
    logpx = str(Path(sys.executable).with_name("logpx"))
    data = ROOT / "tests" / "data" / "mnist-valid200"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([logpx, "job", *args, "--url", server.url], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out

    with LocalServer(checkpoints, env={"LOGPX_DEVICE": "cpu"}) as server:
        out = run(
            "submit", str(data / "valid200-images-idx3-ubyte.gz"), "--labels", str(data / "valid200-labels-idx1-ubyte.gz"),
            "--model", "vae1-iwae50", "--estimators", "iwae:100", "jvi:100:1", "--seed", "3", "--watch",
        )  # fmt: skip
        job = out.stdout.splitlines()[0]
        assert f"job {job}: succeeded, 200/200 inputs" in out.stdout
        assert "iwae:100 (importance)" in out.stdout and "jvi:100:1 (importance)" in out.stdout
        assert "verdicts:" in out.stdout and "mean log p(x) -" in out.stdout
        assert "advice: run AIS instead" in out.stdout  # no number without its verdict, and what to run instead
        assert "run:     logpx job submit DATA --model vae1-iwae50 --estimators iwae:100@ais:1000" in out.stdout
        assert "certify: logpx bdmc --model vae1-iwae50 --sampler ais:1000" in out.stdout
        assert "200/200" in out.stderr  # the progress bar
        run("results", job, "-o", str(tmp_path / "rows.csv"))
        lines = (tmp_path / "rows.csv").read_text().splitlines()
        assert len(lines) == 201 and lines[0].startswith("index,label,iwae:100.log_px")
        assert run("status", job).stdout == out.stdout[out.stdout.index("job ") :]
        assert job in run("list").stdout
        # A finished job stays as it is, and cancel says so; a unique prefix of the id names the job.
        assert run("cancel", job[:8]).stdout.strip() == f"job {job} had already succeeded: nothing to cancel"
