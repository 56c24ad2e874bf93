"""docker-compose.yml brought up for real with podman-compose on loopback: the CPU profile (the service behind
nginx) and the scale-out profile (replicas behind nginx, the jobs in PostgreSQL), then taken down.

Where the official nginx and postgres images cannot be pulled (no registry here), ``make compose-images``
builds stand-ins with the same contracts from Debian's packages. podman needs the runc runtime, cgroupfs and
explicit ulimits here: a containers.conf of the test's own says so (CONTAINERS_CONF), nothing system-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .containers import podman_works, remove_containers
from .local_server import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = str(Path(sys.executable).with_name("podman-compose"))
TOKEN = "compose-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [
    pytest.mark.skipif(podman_works() is not None, reason=str(podman_works())),
    pytest.mark.skipif(
        not Path(COMPOSE).exists(), reason="podman-compose is not installed (pip install podman-compose)"
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    build = subprocess.run(
        ["make", "compose-images", "ENGINE=podman"], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return {
        **os.environ,
        "CONTAINERS_CONF": str(conf),
        "LOGPX_NGINX_IMAGE": "localhost/logpx-nginx",
        "LOGPX_POSTGRES_IMAGE": "localhost/logpx-postgres",
        "LOGPX_API_TOKEN": TOKEN,
    }


@pytest.fixture
def project(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    name = f"lpx{uuid.uuid4().hex[:6]}"
    yield name, env
    # podman-compose's down knows one instance per service, and a replica made by --scale keeps the database
    # it requires from being removed: the project's containers go by its label first, then the rest.
    remove_containers(f"label=com.docker.compose.project={name}", env)
    down = subprocess.run(
        [COMPOSE, "-p", name, "--profile", "cpu", "--profile", "scale", "--profile", "ray", "down", "-v"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr[-2000:]
    for kind in ("ps -a", "volume ls", "network ls"):
        left = subprocess.run(
            ["podman", *kind.split(), "--format", "{{.Name}}" if kind != "ps -a" else "{{.Names}}"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert name not in left.stdout, (kind, left.stdout)  # it all comes down


def _compose(name: str, env: dict[str, str], *args: str) -> None:
    out = subprocess.run([COMPOSE, "-p", name, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def _wait_ready(url: str) -> None:
    assert wait_ready(url, 180, interval=1), f"{url} never became ready"


def _in_container(env: dict[str, str], container: str, method: str, path: str, body: Any = None) -> Any:
    """A request made from inside one replica to itself: the replicas publish no port of their own."""
    script = (
        "import json, sys, urllib.request as u\n"
        f"r = u.Request('http://127.0.0.1:8000{path}', method={method!r}, headers={{'Authorization': 'Bearer {TOKEN}', 'Content-Type': 'application/json'}},"
        f" data={json.dumps(body).encode() if body is not None else None!r})\n"
        "print(u.urlopen(r, timeout=60).read().decode())\n"
    )
    out = subprocess.run(
        ["podman", "exec", container, "python", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_cpu_profile_serves_through_nginx(project: tuple[str, dict[str, str]]) -> None:
    name, env = project
    port = free_port()
    _compose(name, {**env, "LOGPX_CPU_PORT": str(port)}, "--profile", "cpu", "up", "-d", "nginx-cpu")
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    r = httpx.post(
        f"{url}/v1/models/vae1-iwae50/evidence", json={"inputs": [[0.0] * 784], "seed": 1}, headers=AUTH, timeout=60
    )
    assert r.status_code == 200 and r.json()["results"][0]["verdict"]["level"] in {"reliable", "caution", "unreliable"}
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401  # the token passed through compose


def test_scale_profile_replicas_share_jobs_in_postgres(project: tuple[str, dict[str, str]]) -> None:
    name, env = project
    port = free_port()
    _compose(
        name,
        {**env, "LOGPX_LB_PORT": str(port)},
        "--profile",
        "scale",
        "up",
        "-d",
        "--scale",
        "logpx-replica=2",
        "nginx",
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    listing = subprocess.run(["podman", "ps", "--format", "{{.Names}}"], env=env, capture_output=True, text=True).stdout
    replicas = sorted(n for n in listing.split() if n.startswith(f"{name}_logpx-replica_"))
    assert len(replicas) == 2, listing
    for replica in replicas:  # both up, both on the database
        deadline = time.monotonic() + 180
        while True:
            try:
                _in_container(env, replica, "GET", "/v2/health/ready")
                break
            except AssertionError:
                assert time.monotonic() < deadline, replica
                time.sleep(1)
    job = {"model": "vae1-iwae50", "inputs": [[0.0] * 784] * 6, "estimators": [{"name": "iwae", "k": 100}]}
    submitted = _in_container(env, replicas[0], "POST", "/v1/jobs", job)
    deadline = time.monotonic() + 120
    while (seen := _in_container(env, replicas[1], "GET", f"/v1/jobs/{submitted['id']}"))["state"] != "succeeded":
        assert time.monotonic() < deadline, seen
        time.sleep(1)
    assert seen["progress"]["done"] == 6  # submitted through one replica, read through the other
    through_nginx = httpx.get(f"{url}/v1/jobs/{submitted['id']}", headers=AUTH, timeout=30).json()
    assert through_nginx["state"] == "succeeded"


@pytest.mark.skipif(
    os.environ.get("LOGPX_TEST_RAY_COMPOSE") != "1",
    reason="the ray profile's image (pip install '.[ray]' on top of the CPU image) and three more containers add "
    "about 3 minutes to a suite near its 15-minute budget: LOGPX_TEST_RAY_COMPOSE=1 runs it (docs/deploy.md)",
)
def test_ray_profile_runs_a_job_on_the_ray_workers(project: tuple[str, dict[str, str]]) -> None:
    name, env = project
    build = subprocess.run(
        ["make", "image", "ENGINE=podman", "EXTRAS=[ray]", "IMAGE_TAG=cpu-ray"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    port = free_port()
    _compose(name, {**env, "LOGPX_RAY_PORT": str(port)}, "--profile", "ray", "up", "-d", "nginx-ray")
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    job = {
        "model": "vae1-iwae50",
        "inputs": [[0.0] * 784] * 40,
        "estimators": [{"name": "iwae", "k": 5000}],
    }  # 4 chunks
    deadline = time.monotonic() + 120
    # Jobs are off (503, saying why) until the service has joined the Ray head, which starts beside it.
    while (response := httpx.post(f"{url}/v1/jobs", json=job, headers=AUTH, timeout=60)).status_code == 503:
        assert time.monotonic() < deadline, response.text
        time.sleep(2)
    assert response.status_code == 202, response.text
    submitted = response.json()
    deadline = time.monotonic() + 300
    while (seen := httpx.get(f"{url}/v1/jobs/{submitted['id']}", headers=AUTH, timeout=30).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, seen
        time.sleep(1)
    assert seen["state"] == "succeeded", seen["error"]
    assert seen["runs_on"]["executor"] == "ray" and seen["progress"]["done"] == 40, seen["runs_on"]
    assert seen["runs_on"]["nodes"] >= 2, seen["provenance"]  # spread over the cluster's nodes
