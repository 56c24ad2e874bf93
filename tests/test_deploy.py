"""Deployment files: compose against the Compose specification, the Dockerfile against the settings and
the tested entry command, hadolint, and nginx spreading requests over two real service processes."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from logpx.app.config import Settings
from tests.local_server import LocalServer, free_port

from .helpers import write_checkpoints

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_compose_file_validates_against_the_compose_spec() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean() -> None:
    files = [ROOT / "Dockerfile", *sorted((ROOT / "docker").glob("*.Dockerfile"))]  # the stand-ins for compose too
    result = subprocess.run([str(BIN / "hadolint"), *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_agrees_with_settings_and_make_serve() -> None:
    env = dict(re.findall(r"(LOGPX_[A-Z_]+)=(\S+)", DOCKERFILE))
    for name in env:
        assert name.removeprefix("LOGPX_").lower() in Settings.model_fields, name
    fields = {k.removeprefix("LOGPX_").lower(): v for k, v in env.items() if k != "LOGPX_DEVICE"}
    # Secure by default: the image listens on 0.0.0.0, so it starts only with a token (or the explicit opt-out).
    with pytest.raises(ValidationError, match="LOGPX_API_TOKEN is not set"):
        Settings(_env_file=None, **fields)
    settings = Settings(_env_file=None, **fields, api_token="t")
    assert f"EXPOSE {settings.port}" in DOCKERFILE
    assert "/v2/health/ready" in DOCKERFILE
    # The container runs exactly what `make serve` and the end-to-end test run.
    assert 'CMD ["logpx", "serve"]' in DOCKERFILE
    assert "$(BIN)/logpx serve" in (ROOT / "Makefile").read_text()
    assert '"serve"]' in (ROOT / "tests" / "local_server.py").read_text()  # what the end-to-end test starts
    assert 'LocalServer(ROOT / "checkpoints"' in (ROOT / "tests" / "test_e2e.py").read_text()
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)
    assert (
        env["LOGPX_CHECKPOINT_DIR"] == "/srv/logpx/checkpoints"
        and "COPY --chown=10001:10001 checkpoints/" in DOCKERFILE
    )
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "/srv/logpx/checkpoints:ro" in compose and "capabilities: [gpu]" in compose and "start_period" in compose


@pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (make test installs it where apt-get can)",
)
def test_nginx_spreads_requests_over_two_replicas(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checkpoints = write_checkpoints(tmp_path / "checkpoints")
    lb_port = free_port()
    with contextlib.ExitStack() as stack:
        replicas = [
            stack.enter_context(
                LocalServer(checkpoints, env={"LOGPX_TORCH_THREADS": "1"}, log_path=tmp_path / f"server-{i}.log")
            )
            for i in range(2)
        ]
        ports = [r.port for r in replicas]
        conf = (ROOT / "docker" / "nginx.conf").read_text()
        conf = conf.replace(
            "server ${LOGPX_UPSTREAM}:8000 max_fails=3 fail_timeout=10s;",
            " ".join(f"server 127.0.0.1:{p};" for p in ports),
        )
        conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{lb_port};").replace("/tmp/", f"{tmp_path}/")
        (tmp_path / "nginx.conf").write_text(conf)
        check = subprocess.run(
            [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        lb = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(lambda: (lb.terminate(), lb.wait(timeout=20)))
        body = {"inputs": [[0.0] * 784], "estimator": {"name": "iwae", "k": 10}}
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{lb_port}") as http:
            while True:
                try:
                    if http.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "nginx never answered"
                time.sleep(0.1)
            answers = [http.post("/v1/models/tiny/evidence", json=body) for _ in range(20)]
        assert all(r.status_code == 200 for r in answers)
        assert len({r.json()["results"][0]["log_px"] for r in answers}) == 1  # stateless: same answer anywhere
        for port in ports:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            served = re.search(
                r'logpx_requests_total\{endpoint="/v1/models/\{name\}/evidence",model="tiny",status="200"\} (\d+)',
                metrics,
            )
            assert served and int(served.group(1)) >= 3, (port, served)
