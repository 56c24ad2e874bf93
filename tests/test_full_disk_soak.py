"""A soak on a disk that fills and recovers: a real server whose job store lives on a 6 MB tmpfs, jobs running
and event streams open while a filler file takes the last free bytes, then is removed. The runner must live
through it (readiness says the store is failing, the job in hand fails with the store's reason or is taken up
again), and once there is room, jobs run again and readiness is back. Root only (it mounts a tmpfs)."""

from __future__ import annotations

import io
import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from .helpers import write_checkpoints
from .local_server import LocalServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root"),
]


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _wait(http: httpx.Client, job: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while (status := http.get(f"/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def test_the_service_lives_through_a_full_disk(tmp_path: Path, small_disk: Path) -> None:
    checkpoints = write_checkpoints(tmp_path / "checkpoints")
    env = {
        "LOGPX_DATA_DIR": str(small_disk),
        "LOGPX_DEVICE": "cpu",
        "LOGPX_JOB_LEASE_S": "3",
        "LOGPX_JOB_POLL_S": "0.2",
    }
    data = io.BytesIO()
    np.save(data, (np.random.default_rng(0).random((400, 784)) < 0.3).astype(np.uint8) * 255)
    form = {"model": "tiny", "estimators": ["iwae:200", "jvi:200:1", "elbo:200"]}  # ~3 KB of rows per input

    def submit(http: httpx.Client) -> str:
        r = http.post("/v1/jobs", data=form, files={"data": ("x.npy", data.getvalue())})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    filler = small_disk / "filler"
    with LocalServer(checkpoints, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        job = submit(http)
        with ExitStack() as streams:
            for _ in range(3):
                streams.enter_context(http.stream("GET", f"/v1/jobs/{job}/events"))
            # Take every byte left: the job's next commits find the disk full.
            with open(filler, "wb") as f, pytest.raises(OSError):
                f.write(b"\0" * (8 * 2**20))
            deadline = time.monotonic() + 60
            while True:  # until readiness reports the full store; live and evidence answer all along
                ready = http.get("/v2/health/ready")
                if ready.status_code == 503 and "job store is failing" in (ready.json().get("jobs") or ""):
                    break
                assert http.get("/v2/health/live").status_code == 200
                assert time.monotonic() < deadline, "readiness never reported the full store"
                time.sleep(0.1)
            assert http.post("/v1/models/tiny/evidence", json={"inputs": [[0.0] * 784]}).status_code == 200
            filler.unlink()  # room again, while the runner retries
        status = _wait(http, job, timeout=120)
        # The retried commit went through and the job finished, or it had failed with the store's reason first.
        assert status["state"] == "succeeded" or "job store" in (status["error"] or ""), status
        second = submit(http)
        assert _wait(http, second, timeout=120)["state"] == "succeeded"
        deadline = time.monotonic() + 30
        while http.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http.get(f"/v1/jobs/{second}/results").text.count("\n") == 400
