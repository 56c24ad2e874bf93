"""The adversarial corpus (issue: what a probe of `make serve` broke): each case answers a clear 4xx, a
verdict or its own 504, never a 500, never a stall of the rest, never a file-system path."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from logpx.app.config import Settings
from logpx.app.worker import BatchItem, DeviceWorker
from logpx.io import save_checkpoint
from tests.helpers import DATASET, TRAINING, digit_image, linear_gaussian, png_bytes, write_checkpoints

from ..helpers import IMAGE, assert_problem, make_client, wait_ready

LOGPX = str(Path(sys.executable).with_name("logpx"))


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The usual tiny checkpoints plus a FIFO, a dangling link, metadata that asks for 600,000 latents,
    a string input shape, and a model that is finite at zero and NaN elsewhere."""
    d = write_checkpoints(tmp_path_factory.mktemp("hostile"))
    os.mkfifo(d / "fifo.safetensors")
    (d / "with space.safetensors").write_bytes(b"x")
    (d / "_private.safetensors").write_bytes(b"x")
    (d / "dangling.safetensors").symlink_to(d / "nowhere" / "gone.safetensors")
    lg = linear_gaussian(input_dim=10)
    save_checkpoint(d / "huge.safetensors", lg, training=TRAINING, dataset=DATASET)
    _rewrite_meta(d / "huge.safetensors", arch={"input_dim": 10, "latent": 600_000})
    save_checkpoint(d / "shapestr.safetensors", lg, training=TRAINING, dataset=DATASET)
    _rewrite_meta(d / "shapestr.safetensors", input_shape="10")
    nan_model = linear_gaussian(input_dim=10)
    with torch.no_grad():
        nan_model.enc_weight.fill_(1e30)  # mu = A x: finite at x = 0 (the warm-up), overflowing elsewhere
    save_checkpoint(d / "nanmodel.safetensors", nan_model, training=TRAINING, dataset=DATASET)
    return d


def _rewrite_meta(path: Path, **changes: object) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = json.loads(f.metadata()["logpx"])
    meta.update(changes)
    save_file(tensors, str(path), metadata={"logpx": json.dumps(meta)})


@pytest.fixture(scope="module")
def hostile(hostile_dir: Path) -> TestClient:
    with make_client(hostile_dir, deadline_s=1.0) as c:
        wait_ready(c, timeout=20)  # a FIFO must not freeze loading
        yield c  # type: ignore[misc]


def test_hostile_files_fail_alone_with_reasons_and_no_paths(hostile: TestClient, hostile_dir: Path) -> None:
    models = {m["name"]: m for m in hostile.get("/v1/models").json()["models"]}
    assert models["tiny"]["status"] == "ready"
    assert models["fifo"]["status"] == "failed" and "not a regular file" in models["fifo"]["reason"]
    assert models["dangling"]["status"] == "failed" and "does not exist" in models["dangling"]["reason"]
    assert models["huge"]["status"] == "failed" and "architecture needs [10, 600000]" in models["huge"]["reason"]
    assert models["shapestr"]["status"] == "failed" and "input_shape" in models["shapestr"]["reason"]
    body = (
        hostile.get("/v1/models").text + hostile.post("/v1/models/dangling/evidence", json={"inputs": [[0] * 10]}).text
    )
    assert str(hostile_dir) not in body and "/tmp" not in body
    assert hostile.get("/v1/models/shapestr").status_code == 200


def test_a_model_that_fails_on_one_input_gives_that_input_its_verdict(hostile: TestClient) -> None:
    r = hostile.post(
        "/v1/models/nanmodel/evidence",
        json={"inputs": [[0.0] * 10, [0.5] * 10], "estimator": {"name": "iwae", "k": 30}},
    )
    assert r.status_code == 200, r.text
    zero, half = r.json()["results"]
    assert zero["log_px"] is not None
    assert half["log_px"] is None and half["verdict"]["level"] == "unreliable"


def test_jvi_work_is_bounded_before_it_starts(hostile: TestClient) -> None:
    started = time.monotonic()
    r = hostile.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE] * 3, "estimator": {"name": "jvi", "k": 100_000, "order": 2}}
    )
    assert_problem(r, 413, "estimator.k")
    r = hostile.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 14, "order": 8}}
    )
    assert r.status_code == 200, r.text  # C(14, 8) subsets, listed in chunks (the probe's 13 GB case)
    assert time.monotonic() - started < 10


def test_the_deadline_stops_the_jackknife_too(hostile: TestClient) -> None:
    """k = 60,000, order 2: a quick forward pass, then 1.8e9 leave-two-out terms (several seconds)."""
    started = time.monotonic()
    r = hostile.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 60_000, "order": 2}}
    )
    assert_problem(r, 504, "deadline_s")
    assert time.monotonic() - started < 3.0


def test_metric_labels_only_name_known_models(hostile: TestClient) -> None:
    for i in range(30):
        hostile.post(f"/v1/models/no-such-model-{i}/evidence", json={"inputs": [IMAGE]})
    assert "no-such-model" not in hostile.get("/metrics").text


def test_unknown_model_is_404_before_its_body_is_read(hostile: TestClient) -> None:
    r = hostile.post(
        "/v1/models/missing/evidence", content=b"{" * 100_000, headers={"content-type": "application/json"}
    )
    assert_problem(r, 404, "name")


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"inputs": "\xff\xfe"}', b'{"inputs": [[' + b"9" * 5000 + b"]]}"],
    ids=["deeply-nested", "invalid-utf8", "huge-integer"],
)
def test_unparseable_bodies_are_422(hostile: TestClient, body: bytes) -> None:
    r = hostile.post("/v1/models/tiny/evidence", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text


@pytest.mark.parametrize(
    ("tensor", "params", "field"),
    [
        ({"shape": [0, 784]}, {}, "inputs[0].shape[0]"),
        ({"shape": [-1, 784]}, {}, "inputs[0].shape[0]"),
        ({}, {"k": "many"}, "parameters.k"),
        ({}, {"k": [5]}, "parameters.k"),
        ({}, {"binarize": "sometimes"}, "parameters.binarize"),
        ({}, {"seed": -1}, "parameters.seed"),
        ({}, {"order": 2.5, "estimator": "jvi"}, "parameters.order"),
    ],
)
def test_oip_parameters_are_validated_like_json_routes(
    hostile: TestClient, tensor: dict[str, object], params: dict[str, object], field: str
) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": IMAGE, **tensor}],
        "parameters": params,
    }
    assert_problem(hostile.post("/v2/models/tiny/infer", json=body), 422, field)


def test_mutated_images_never_500(hostile: TestClient) -> None:
    rng = random.Random(0)
    for fmt, kind in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        good = png_bytes(digit_image(), fmt=fmt)
        for _ in range(60):
            data = bytearray(good)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(8, len(data))]
            files = [("files", ("m", bytes(data), kind))]
            r = hostile.post("/v1/models/tiny/evidence/images", files=files, data={"k": "10"})
            assert r.status_code in (200, 422), (fmt, r.status_code, r.text)
    truncated = png_bytes(digit_image())[:-30]
    files = [("files", ("t.png", truncated, "image/png"))]
    assert_problem(hostile.post("/v1/models/tiny/evidence/images", files=files), 422, "files[0]")


def test_every_500_carries_the_request_id(hostile: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from logpx.app.usecases import evidence

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(evidence, "evidence", broken)
    r = hostile.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE]}, headers={"X-Request-ID": "abc123"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "abc123"
    assert r.json()["detail"] == "the server failed to handle this request; see its log" and "Traceback" not in r.text


def test_an_empty_token_refuses_to_start() -> None:
    with pytest.raises(ValueError):
        Settings(api_token="  ")
    env = {**os.environ, "LOGPX_API_TOKEN": ""}
    out = subprocess.run([LOGPX, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "LOGPX_API_TOKEN" in out.stderr and "Traceback" not in out.stderr


def test_cors_preflight_passes_the_token_guard(checkpoint_dir: Path) -> None:
    with make_client(checkpoint_dir, api_token="s3cret", cors_origins=["https://example.org"]) as c:
        r = c.options("/v1/models", headers={"Origin": "https://example.org", "Access-Control-Request-Method": "GET"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://example.org"
        assert c.get("/v1/models").status_code == 401


def test_batch_mates_keep_their_own_deadlines() -> None:
    """Two requests share one forward pass; the first's deadline passes during it: it alone gets 504."""

    def item() -> BatchItem:  # type: ignore[type-arg]
        def forward(x: torch.Tensor, noise: torch.Tensor, check) -> torch.Tensor:  # type: ignore[no-untyped-def]
            time.sleep(0.3)
            check()
            return torch.zeros(2, x.shape[0])

        return BatchItem(
            key="k",
            size=1,
            prepare=lambda: (torch.zeros(1, 1), torch.zeros(2, 1, 1)),
            forward=forward,
            estimate=lambda lw, check: lw,
            finish=lambda est, cols: "answer",
        )

    async def run() -> list[object]:
        worker = DeviceWorker("cpu", 8, 1, batch_max_inputs=8, batch_delay_s=0.2)
        worker.start()
        try:
            return await asyncio.gather(worker.submit(item(), 0.1), worker.submit(item(), 30.0), return_exceptions=True)
        finally:
            worker.stop()

    short, long = asyncio.run(run())
    assert type(short).__name__ == "DeadlineExceeded"
    assert getattr(long, "value", None) == "answer"


def test_a_client_that_leaves_stops_its_work(tmp_path: Path) -> None:
    """The real server: a client gives up on a long AIS request after 1 s; the next request does not wait
    behind it, and the log records the 499."""
    import httpx

    from tests.local_server import LocalServer

    with LocalServer(write_checkpoints(tmp_path), log_path=tmp_path / "server.log") as server:
        slow = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 16}, "sampler": {"name": "ais", "steps": 9000}}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.url}/v1/models/tiny/evidence", json=slow, timeout=1.0)
        quick = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 10}}
        r = httpx.post(f"{server.url}/v1/models/tiny/evidence", json=quick, timeout=60)
        assert r.status_code == 200 and r.json()["timing"]["queue_s"] < 1.0, r.json()["timing"]
        deadline = time.monotonic() + 5
        while '"status": 499' not in (tmp_path / "server.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"status": 499' in (tmp_path / "server.log").read_text()


def test_large_bodies_do_not_stall_the_health_check(tmp_path: Path) -> None:
    """Four clients sending near-limit OIP bodies, and two near-limit JSON log-weights to /v1/estimate (it
    parsed and validated them on the event loop: 0.6 s for 7 MB); /v2/health/live keeps answering within the
    image's healthcheck timeout (3 s), here well under it."""
    import threading

    import httpx

    from tests.local_server import LocalServer

    values = (8 * 1024 * 1024 - 4096) // 4 // 784 * 784  # "0.5," is 4 bytes: just under the body limit
    data = ",".join(["0.5"] * values)
    body = f'{{"inputs": [{{"name": "x", "shape": [{values // 784}, 784], "datatype": "FP32", "data": [{data}]}}]}}'.encode()
    rows = ",".join(["[" + ",".join(["-90.5"] * 200) + "]"] * ((8 * 1024 * 1024 - 4096) // 1202))
    estimate = f'{{"log_weights": [{rows}], "estimators": [{{"name": "iwae"}}], "diagnostics": false}}'.encode()
    with LocalServer(write_checkpoints(tmp_path)) as server:

        def hammer(path: str, content: bytes) -> None:
            for _ in range(2):
                httpx.post(
                    f"{server.url}{path}", content=content, headers={"content-type": "application/json"}, timeout=60
                )

        threads = [threading.Thread(target=hammer, args=("/v2/models/tiny/infer", body)) for _ in range(4)]
        threads += [threading.Thread(target=hammer, args=("/v1/estimate", estimate)) for _ in range(2)]
        for t in threads:
            t.start()
        worst = 0.0
        while any(t.is_alive() for t in threads):
            started = time.monotonic()
            assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.05)
        for t in threads:
            t.join()
    # The healthcheck gives up at 3 s; the worst seen on this project's 2-core machine was 1.0 s (it was
    # 4-5 s before parsing moved off the loop); 2 s leaves room for a loaded CI host.
    assert worst < 2.0, worst
    assert math.isfinite(worst)


def test_an_oversized_request_head_is_cut_off(tmp_path: Path) -> None:
    """`logpx serve` bounds the request head (h11, LOGPX_MAX_HEADER_BYTES): a 4 MB header is refused at
    once instead of parsed for seconds, and the server keeps serving."""
    import socket

    import httpx

    from tests.local_server import LocalServer

    with LocalServer(write_checkpoints(tmp_path)) as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(b"a" * 65536)
                reply = sock.recv(200)
            except OSError:  # the server closed the connection under us: also a refusal
                reply = b""
        assert not reply.startswith(b"HTTP/1.1 200"), reply
        assert time.monotonic() - started < 5
        assert httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200


def test_the_bad_input_fails_alone_in_compare_and_in_jobs(hostile: TestClient) -> None:
    """Compare answered 500 and a job (importance or AIS) failed as an internal error with no rows, the good
    rows of its chunk included: now every route and the runner give the bad input its own unreliable row."""
    inputs = [[0.0] * 10, [0.5] * 10, [0.0] * 10]
    compared = hostile.post(
        "/v1/models/nanmodel/compare",
        json={"inputs": inputs, "estimators": [{"name": "iwae", "k": 30}], "replicates": 2},
    )
    assert compared.status_code == 200, compared.text
    (summary,) = compared.json()["estimators"]
    assert summary["mean"][1] is None and summary["verdicts"][1]["level"] == "unreliable"
    assert summary["mean"][0] is not None and summary["mean"][2] is not None
    for estimators in ([{"name": "iwae", "k": 30}], [{"name": "iwae", "k": 4, "sampler": {"name": "ais", "steps": 5}}]):
        r = hostile.post("/v1/jobs", json={"model": "nanmodel", "inputs": inputs, "estimators": estimators})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        deadline = time.monotonic() + 30
        while (status := hostile.get(f"/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status["state"] == "succeeded", status["error"]
        rows = [json.loads(line) for line in hostile.get(f"/v1/jobs/{job}/results").text.splitlines()]
        cells = [row["estimates"][0] for row in rows]
        assert cells[1].get("log_px") is None and cells[1]["verdict"]["level"] == "unreliable"
        assert "not finite" in cells[1]["verdict"]["reasons"][0]
        assert cells[0]["log_px"] is not None and cells[2]["log_px"] is not None
