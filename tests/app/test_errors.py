"""The bad-input corpus, overload, deadlines and security: every failure is a clear 4xx/5xx problem+json
naming the field and the limit, never a 500 and never a stack trace."""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ..helpers import IMAGE, assert_problem, digit_image, make_client, png_bytes, wait_ready

EVIDENCE = "/v1/models/tiny/evidence"
IMAGES = "/v1/models/tiny/evidence/images"


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` greyscale pixels, with almost no data (a bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "body,status,field",
    [
        ({"inputs": [[0.5] * 783]}, 422, "inputs[0]"),
        ({"inputs": [IMAGE, [[0.1] * 28] * 27]}, 422, "inputs[1]"),
        ({"inputs": [[-0.1] + [0.0] * 783]}, 422, "inputs[0]"),
        ({"inputs": [[256] + [0] * 783], "scale": "byte"}, 422, "inputs[0]"),
        ({"inputs": [[1.5] + [0] * 783], "scale": "byte"}, 422, "inputs[0]"),
        ({"inputs": [[2.0] + [0] * 783]}, 422, "inputs[0]"),
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 0}}, 422, "estimator.k"),
        ({"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 10**6}}, 422, "estimator.k"),
        ({"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 5, "order": 5}}, 422, "estimator"),
        ({"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 5, "order": 1}}, 422, "estimator"),
        ({"inputs": [IMAGE], "estimator": {"name": "magic", "k": 5}}, 422, "estimator.name"),
        ({"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 50, "order": 9}}, 422, "estimator.order"),
        ({"inputs": [IMAGE], "seed": -1}, 422, "seed"),
        ({"inputs": [IMAGE], "seed": 2**70}, 422, "seed"),  # past orjson's integers: the standard parser takes it
        ({"inputs": [IMAGE], "unknown": 1}, 422, "unknown"),
        ({"inputs": [IMAGE] * 300}, 413, "inputs"),
        ({"inputs": [IMAGE] * 100, "estimator": {"name": "iwae", "k": 50_000}}, 413, "inputs"),
    ],
)
def test_bad_json_bodies(client: TestClient, body: dict, status: int, field: str) -> None:
    assert_problem(client.post(EVIDENCE, json=body), status, field)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_values(client: TestClient, literal: bytes) -> None:
    raw = b'{"inputs": [[' + literal + b"," + b",".join([b"0"] * 783) + b"]]}"
    body = assert_problem(
        client.post(EVIDENCE, content=raw, headers={"content-type": "application/json"}), 422, "inputs[0]"
    )
    assert "finite" in body["detail"]


def test_malformed_json_and_media_types(client: TestClient) -> None:
    body = assert_problem(
        client.post(EVIDENCE, content=b'{"inputs": [', headers={"content-type": "application/json"}), 422
    )
    assert "JSON" in body["detail"] or "json" in body["detail"]
    assert_problem(
        client.post(EVIDENCE, content=b"inputs=1", headers={"content-type": "text/plain"}), 415, "Content-Type"
    )
    assert_problem(client.post(EVIDENCE, content=b"{}"), 415, "Content-Type")


def test_unknown_model_and_bad_names(client: TestClient) -> None:
    assert_problem(client.post("/v1/models/nope/evidence", json={"inputs": [IMAGE]}), 404, "name")
    # An encoded "/" never reaches a model lookup: the path matches no route.
    assert_problem(client.post("/v1/models/..%2F..%2Fetc/evidence", json={"inputs": [IMAGE]}), 404)
    assert_problem(client.post("/v1/models/..hidden/evidence", json={"inputs": [IMAGE]}), 422, "name")
    assert_problem(client.get("/v1/models/a;b"), 422, "name")
    assert_problem(client.get("/v1/models/%00x"), 422, "name")


def test_body_over_byte_limit(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    with make_client(checkpoint_dir, max_body_bytes=4096) as c:
        body = assert_problem(c.post(EVIDENCE, json={"inputs": [IMAGE] * 3}), 413, "body")
        assert body["limit"] == 4096

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b" " * 1000

        # No Content-Length: the limit is enforced while the body streams in.
        assert_problem(c.post(EVIDENCE, content=chunks(), headers={"content-type": "application/json"}), 413, "body")


@pytest.mark.parametrize(
    "payload,content_type,status",
    [
        (b"definitely not a png", "image/png", 422),
        (png_bytes(np.zeros((27, 28), np.uint8)), "image/png", 422),
        (png_bytes(np.zeros((28, 28, 3), np.uint8), mode="RGB"), "image/png", 422),
        (png_with_declared_size(60_000, 60_000), "image/png", 422),
        (png_with_declared_size(10_000, 10_000), "image/png", 422),
        (png_bytes(digit_image()), "image/gif", 415),
        (png_bytes(digit_image()), "application/octet-stream", 415),
    ],
)
def test_bad_images(client: TestClient, payload: bytes, content_type: str, status: int) -> None:
    r = client.post(IMAGES, files=[("files", ("x", payload, content_type))], data={"k": "10"})
    assert_problem(r, status, "files[0]")


def test_bad_image_form_values(client: TestClient) -> None:
    files = [("files", ("a.png", png_bytes(digit_image()), "image/png"))]
    assert_problem(client.post(IMAGES, files=files, data={"estimator": "jvi", "k": "5", "order": "5"}), 422, "order")
    assert_problem(client.post(IMAGES, files=files, data={"k": "0"}), 422)
    assert_problem(client.post(IMAGES, files=files, data={"k": "1000000"}), 422, "k")


def test_overload_answers_503_with_retry_after(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    """One running and one queued request fill a queue of depth 1; the rest are refused at once.
    Every accepted request completes with the answer it gets when sent alone."""
    body = {"inputs": [[0.5] * 784] * 20, "estimator": {"name": "iwae", "k": 20_000}, "diagnostics": False}
    with make_client(checkpoint_dir, queue_depth=1, max_batch_k=10**6) as c:
        wait_ready(c)
        results: list = []
        threads = [
            threading.Thread(target=lambda: results.append(c.post("/v1/models/lg/evidence", json=body)))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in results)
        assert 503 in statuses and statuses.count(200) >= 2, statuses
        for r in results:
            if r.status_code == 503:
                assert_problem(r, 503, "queue_depth")
                assert r.headers["retry-after"] == "2"
        alone = c.post("/v1/models/lg/evidence", json=body).json()["results"]
        assert all(r.json()["results"] == alone for r in results if r.status_code == 200)


def test_deadline_answers_504_and_the_server_keeps_serving(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    with make_client(checkpoint_dir, deadline_s=0.05, max_elements=2**16) as c:
        wait_ready(c)
        for entry in c.app.state.registry.entries():  # type: ignore[attr-defined]
            entry.speed = None  # no speed to refuse it up front by: it runs, and the deadline stops it
        slow = {"inputs": [[0.5] * 784] * 10, "estimator": {"name": "iwae", "k": 50_000}}
        assert_problem(c.post("/v1/models/lg/evidence", json=slow), 504, "deadline_s")
        assert c.post(EVIDENCE, json={"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 10}}).status_code == 200


def test_bearer_token_guards_everything_but_health(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    """Open: the health checks, and what a browser loads before it can ask for the token (the page, its files,
    the API's description and its interactive page). Everything that touches a model or a job is guarded."""
    with make_client(checkpoint_dir, api_token="s3cret") as c:
        assert c.get("/v2/health/live").status_code == 200
        wait_ready(c)
        for path in ("/", "/docs", "/openapi.json", "/static/app.js", "/static/vendor/uplot-1.6.32/LICENSE"):
            assert c.get(path).status_code == 200, path
        assert_problem(c.get("/static/nothing.js"), 404)
        for path in ("/v1/models", "/metrics", "/v1/models/tiny", "/v1/jobs"):
            assert_problem(c.get(path), 401)
            assert_problem(c.get(path, headers={"Authorization": "Bearer wrong"}), 401)
            assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert_problem(c.post(EVIDENCE, json={"inputs": [IMAGE]}), 401)


def test_cors_closed_by_default(client: TestClient) -> None:
    r = client.options(EVIDENCE, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_unknown_routes_are_problem_json(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404)
    assert_problem(client.delete("/v1/models"), 405)
