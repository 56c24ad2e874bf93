"""The CPU image, built and run for real with podman (Debian's; ``make test`` installs it where it can):
``make image``, then the container with the shipped checkpoint and one written by ``logpx train`` mounted,
its own healthcheck, answers equal to ``make serve``'s for the same seed, UID 10001, and the refusal to
start on 0.0.0.0 without a token. Skipped, with the reason, where podman cannot run containers.

podman here needs the runc runtime, the cgroupfs manager and explicit ulimits (docs/deploy.md); the
container uses the host's network, so no port mapping (and no firewall rules) is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .containers import PODMAN, podman_works, remove_containers
from .local_server import LocalServer, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
RUN = [*PODMAN, "run", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768", "--network", "host"]
IMAGE = "localhost/logpx:cpu"
DIGIT = ROOT / "tests" / "data" / "mnist-50000-label3.png"
VALID = ROOT / "tests" / "data" / "mnist-valid200"


pytestmark = [pytest.mark.skipif(podman_works() is not None, reason=str(podman_works())), pytest.mark.slow]


@pytest.fixture(scope="module")
def image() -> str:
    started = time.monotonic()
    build = subprocess.run(["make", "image", "ENGINE=podman"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    size = subprocess.run([*PODMAN, "image", "inspect", IMAGE, "--format", "{{.Size}}"], capture_output=True, text=True)
    print(f"make image: {time.monotonic() - started:.0f} s, {int(size.stdout) / 1e9:.2f} GB")
    return IMAGE


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model, and one that ``logpx train`` writes on the host (as the user running the tests)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    folder.chmod(0o755)  # as a checkpoint directory is: the container's UID 10001 lists it (the files are 0644)
    shutil.copy(ROOT / "checkpoints" / "vae1-iwae50.safetensors", folder)
    train = subprocess.run(
        [str(Path(sys.executable).with_name("logpx")), "train", "--images", str(VALID / "valid200-images-idx3-ubyte.gz"),
         "--labels", str(VALID / "valid200-labels-idx1-ubyte.gz"),
         "--valid", "0.25", "--epochs", "1", "--batch-size", "50", "--out", str(folder / "mine.safetensors")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    return folder


@pytest.fixture(scope="module")
def container(image: str, checkpoints: Path) -> Iterator[dict[str, Any]]:
    name, port = f"logpx-test-{uuid.uuid4().hex[:8]}", free_port()
    subprocess.run(
        [*RUN, "-d", "--name", name, "-e", f"LOGPX_PORT={port}", "-e", "LOGPX_API_TOKEN=s3cret",
         "-v", f"{checkpoints}:/srv/logpx/checkpoints:ro", image],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, 120, interval=0.5):
            raise AssertionError(subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True).stderr)
        yield {"name": name, "url": url, "auth": {"Authorization": "Bearer s3cret"}}
    finally:
        remove_containers(f"name=^{name}$")


def test_the_image_serves_as_make_serve_does(container: dict[str, Any], checkpoints: Path) -> None:
    name, url, auth = container["name"], container["url"], container["auth"]
    # The image's own healthcheck, run by the engine.
    health = subprocess.run([*PODMAN, "healthcheck", "run", name], capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stdout + health.stderr
    # The service runs as UID 10001, and reads a checkpoint the host's `logpx train` wrote.
    uid = subprocess.run([*PODMAN, "exec", name, "id", "-u"], capture_output=True, text=True, timeout=30)
    assert uid.stdout.strip() == "10001"
    models = {m["name"]: m["status"] for m in httpx.get(f"{url}/v1/models", headers=auth).json()["models"]}
    assert models == {"vae1-iwae50": "ready", "mine": "ready"}
    body = {
        "inputs": [[0.0] * 300 + [1.0] * 184 + [0.0] * 300],
        "estimator": {"name": "jvi", "k": 500, "order": 1},
        "seed": 5,
    }
    form = {"estimator": "iwae", "k": "500", "seed": "5"}

    def answers(base: str, headers: dict[str, str]) -> list[Any]:
        evidence = httpx.post(f"{base}/v1/models/vae1-iwae50/evidence", json=body, headers=headers, timeout=60).json()
        with DIGIT.open("rb") as f:
            images = httpx.post(
                f"{base}/v1/models/vae1-iwae50/evidence/images", files={"files": ("d.png", f, "image/png")}, data=form,
                headers=headers, timeout=60,
            ).json()  # fmt: skip
        return [evidence["results"], images["results"]]

    in_image = answers(url, auth)
    with LocalServer(checkpoints) as local:  # what `make serve` runs, on the same checkpoints
        assert answers(local.url, {}) == in_image  # the same torch build and seed: the same numbers, bit for bit


def test_the_image_refuses_to_serve_without_a_token(image: str) -> None:
    out = subprocess.run(
        [*RUN, "--rm", "-e", f"LOGPX_PORT={free_port()}", image], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert (
        "LOGPX_API_TOKEN is not set" in out.stderr + out.stdout
        and "LOGPX_ALLOW_NO_TOKEN=true" in out.stderr + out.stdout
    )
