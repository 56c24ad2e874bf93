"""Low-severity classes from the third adversarial probe: each a case of our own, each failing before its fix."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from logpx.app.config import Settings

from ..helpers import IMAGE, make_client, wait_ready


@pytest.mark.parametrize("token", ["s3cret\n", " s3cret", "sé cret", "s3 cret"])
def test_a_token_no_client_could_send_refuses_to_start(token: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Settings(api_token=token)


def test_a_huge_request_id_is_not_echoed(client: TestClient) -> None:
    sent = "x" * 60_000
    r = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE]}, headers={"X-Request-ID": sent})
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32
    kept = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE]}, headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"


def test_labels_out_of_int64_range_are_a_422(client: TestClient) -> None:
    body = {"model": "tiny", "inputs": [IMAGE], "labels": [2**64 - 1], "estimators": [{"name": "iwae", "k": 10}]}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422 and "labels" in r.text, r.text
    data, labels = io.BytesIO(), io.BytesIO()
    np.save(data, np.zeros((1, 784), dtype=np.uint8))
    np.save(labels, np.array([2**64 - 1], dtype=np.uint64))  # wrapped to -1 before
    files = {"data": ("x.npy", data.getvalue()), "labels": ("y.npy", labels.getvalue())}
    r = client.post("/v1/jobs", data={"model": "tiny", "estimators": ["iwae:10"]}, files=files)
    assert r.status_code == 422 and r.json()["field"] == "labels", r.text


def test_big_endian_log_weights_are_read_as_what_they_are(client: TestClient) -> None:
    log_w = np.random.default_rng(0).normal(-90, 2, size=(50, 3))
    answers = []
    for dtype in ("<f8", ">f8", ">f4"):
        buffer = io.BytesIO()
        np.save(buffer, log_w.astype(dtype))
        r = client.post("/v1/estimate", content=buffer.getvalue(), headers={"content-type": "application/x-npy"})
        assert r.status_code == 200, (dtype, r.text)
        answers.append(r.json()["estimators"][0]["results"][0]["log_px"])
    assert answers[0] == answers[1] and answers[2] == pytest.approx(answers[0], abs=1e-4)


@pytest.mark.parametrize(("reason", "status"), [("database or disk is full", 507), ("database is locked", 503)])
def test_a_store_that_cannot_take_a_job_is_a_507_or_503_not_a_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, reason: str, status: int
) -> None:
    from sqlalchemy.exc import OperationalError

    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO datasets", {}, Exception(reason))

    monkeypatch.setattr(client.app.state.jobs, "put_dataset", refuse)  # type: ignore[attr-defined]
    data = io.BytesIO()
    np.save(data, np.random.default_rng(7).integers(0, 256, (1, 784), dtype=np.uint8))
    r = client.post(
        "/v1/jobs", data={"model": "tiny", "estimators": ["iwae:10"]}, files={"data": ("x.npy", data.getvalue())}
    )
    assert r.status_code == status and r.json()["field"] == "data" and reason in r.json()["detail"], r.text


def test_the_job_quota_is_per_identity_and_atomic(checkpoint_dir: Path) -> None:
    """Other spellings of the same token, or any header when no token is set, share one quota; and
    concurrent submissions cannot overshoot it (the count and the insert are one step)."""
    data = io.BytesIO()
    np.save(data, np.zeros((200, 784), dtype=np.uint8))
    form = {"model": "tiny", "estimators": ["iwae:64@ais:300"]}  # 200 inputs: active long enough

    def submit(c: TestClient, headers: dict[str, str]) -> int:
        return c.post("/v1/jobs", data=form, files={"data": ("x.npy", data.getvalue())}, headers=headers).status_code

    with make_client(checkpoint_dir, api_token="s3cret", max_active_jobs=1) as c:
        wait_ready(c)
        assert submit(c, {"Authorization": "Bearer s3cret"}) == 202
        assert submit(c, {"Authorization": "bearer   s3cret"}) == 429  # the same token, another spelling
    with make_client(checkpoint_dir, max_active_jobs=1) as c:  # no token: a header proves nothing
        wait_ready(c)
        assert submit(c, {}) == 202
        assert submit(c, {"Authorization": "Bearer anything"}) == 429
    with make_client(checkpoint_dir, max_active_jobs=2) as c:
        wait_ready(c)
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: submit(c, {}), range(8)))
        assert sorted(codes) == [202, 202] + [429] * 6, codes


def test_the_pages_say_what_may_run_in_them(client: TestClient) -> None:
    for path, inline in (("/", False), ("/docs", True)):
        r = client.get(path)
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert ("'unsafe-inline'" in policy.split("script-src")[1].split(";")[0]) is inline
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert client.get("/v2/health/live").headers["x-content-type-options"] == "nosniff"


def test_a_json_job_body_is_bounded_like_a_request(checkpoint_dir: Path) -> None:
    """A 94 MB JSON job body cost 3 GB and 118 s before its input count was looked at; JSON job bodies are now
    held to the request body limit (data sets of any size go as files, whose arrays stay compact)."""
    with make_client(checkpoint_dir, max_body_bytes=64 * 1024) as c:
        wait_ready(c)
        body = {"model": "tiny", "inputs": [IMAGE] * 40, "estimators": [{"name": "iwae", "k": 10}]}
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 413 and r.json()["field"] == "body" and "as a file" in r.json()["detail"], r.text
        assert c.post("/v1/jobs", json={**body, "inputs": [IMAGE]}).status_code == 202


def test_a_job_store_that_will_not_open_turns_jobs_off_not_the_service(checkpoint_dir: Path, tmp_path: Path) -> None:
    """A read-only data directory stopped the service from starting, and evidence and health went with it."""
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("a file where the data directory should be")
    with make_client(checkpoint_dir, data_dir=not_a_directory, job_store_wait_s=0) as c:
        wait_ready(c)
        ready = c.get("/v2/health/ready").json()
        assert ready["status"] == "ready" and "job store could not be opened" in ready["jobs"]
        assert c.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE]}).status_code == 200
        off = c.get("/v1/jobs")
        assert off.status_code == 503 and "jobs are off" in off.json()["detail"] and off.headers["retry-after"]
