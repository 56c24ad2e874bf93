"""Evaluation jobs in-process: every state transition, cancel, results in both formats, the event stream,
every bad upload, limits, data-set deduplication, and rows equal to direct requests on the same draws."""

from __future__ import annotations

import gzip
import io
import json
import struct
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from logpx.app.jobs.chunks import chunk_seed

from ..helpers import make_client, wait_ready

MODEL = "tiny"  # tests/helpers.py: a one-layer VAE on 784 Bernoulli pixels
TERMINAL = {"succeeded", "failed", "cancelled"}


def binary_images(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 28, 28)) < 0.3).astype(np.uint8) * 255


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">BBBBIII", 0, 0, 0x08, 3, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">BBBBI", 0, 0, 0x08, 1, len(labels)) + labels.astype(np.uint8).tobytes()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def submit(client: TestClient, data: bytes, *, labels: bytes | None = None, **fields: Any) -> Any:
    form: dict[str, Any] = {"model": MODEL, "estimators": ["iwae:50", "jvi:50:1"], "seed": "7"} | fields
    files = {"data": ("data.bin", data, "application/octet-stream")}
    if labels is not None:
        files["labels"] = ("labels.bin", labels, "application/octet-stream")
    return client.post("/v1/jobs", data=form, files=files)


def wait(client: TestClient, job_id: str, states: set[str] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def rows(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/jobs/{job_id}/results")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, checkpoint_dir: Path) -> Iterator[TestClient]:
    """The same tests on each job store: SQLite (the default) and a real PostgreSQL server."""
    store = (
        {"database_url": request.getfixturevalue("postgres").new_database()} if request.param == "postgresql" else {}
    )
    # Small chunks so that jobs take several; small limits so that each can be reached in a test.
    with make_client(checkpoint_dir, job_chunk_evals=200, max_job_inputs=64, max_active_jobs=50, **store) as c:
        wait_ready(c)
        yield c


def test_a_job_runs_to_success_with_progress_summary_and_rows(client: TestClient) -> None:
    images, labels = binary_images(10), np.arange(10) % 3
    r = submit(client, idx_images(images), labels=idx_labels(labels))
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["state"] in {"queued", "running"}
    assert job["chunk_size"] == 4  # 200 evaluations // k = 50
    assert job["dataset"] == {"sha256": job["dataset"]["sha256"], "count": 10, "source": "idx", "labels": True}
    done = wait(client, job["id"])
    assert done["state"] == "succeeded" and done["progress"]["done"] == done["progress"]["total"] == 10
    assert done["progress"]["fraction"] == 1.0 and done["progress"]["eta_s"] is None and done["finished"]
    got = rows(client, job["id"])
    assert [r["index"] for r in got] == list(range(10)) and [r["label"] for r in got] == labels.tolist()
    for name, summary in zip(["iwae:50", "jvi:50:1"], done["summary"], strict=True):
        values = [r["estimates"][["iwae:50", "jvi:50:1"].index(name)]["log_px"] for r in got]
        assert summary["count"] == 10 and summary["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary["std_err"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(10), rel=1e-9)
        assert sum(summary["verdicts"].values()) == 10 and sum(summary["khat_histogram"]["counts"]) == 10
    csv_lines = client.get(f"/v1/jobs/{job['id']}/results?format=csv").text.splitlines()
    assert (
        csv_lines[0].startswith("index,label,iwae:50.log_px,iwae:50.std_err,iwae:50.verdict") and len(csv_lines) == 11
    )
    first = csv_lines[1].split(",")
    assert (
        float(first[2]) == got[0]["estimates"][0]["log_px"] and first[4] == got[0]["estimates"][0]["verdict"]["level"]
    )


def test_rows_equal_direct_requests_on_the_same_draws(client: TestClient) -> None:
    """Chunk c draws from the generator seeded chunk_seed(seed, c): the evidence endpoint with that seed on
    the chunk's inputs computes the same numbers."""
    images = binary_images(8, seed=1)
    job = submit(client, npy(images), estimators=["iwae:50"]).json()
    got = rows(client, wait(client, job["id"])["id"])
    for c, start in enumerate(range(0, 8, job["chunk_size"])):
        chunk = images[start : start + job["chunk_size"]]
        direct = client.post(
            f"/v1/models/{MODEL}/evidence",
            json={"inputs": chunk.reshape(len(chunk), -1).tolist(), "scale": "byte", "estimator": {"name": "iwae", "k": 50}, "seed": chunk_seed(7, c)},
        ).json()  # fmt: skip
        assert [r["log_px"] for r in direct["results"]] == [
            g["estimates"][0]["log_px"] for g in got[start : start + len(chunk)]
        ]


def test_ais_rows_carry_their_sampler_statistics(client: TestClient) -> None:
    """docs/jobs.md promises `sampler_stats` in AIS rows (a new user found none): acceptance and step size per
    input, for the AIS column only."""
    job = submit(client, npy(binary_images(2, seed=3)), estimators=["iwae:10", "iwae:4@ais:5"]).json()
    for row in rows(client, wait(client, job["id"])["id"]):
        importance, annealed = row["estimates"]
        assert "sampler_stats" not in importance
        assert 0 <= annealed["sampler_stats"]["acceptance"] <= 1 and annealed["sampler_stats"]["step_size"] > 0


def test_same_data_same_seed_same_rows_and_one_stored_copy(client: TestClient) -> None:
    images = binary_images(6, seed=2)
    store = client.app.state.jobs  # type: ignore[attr-defined]
    before = store.data_bytes()
    a = submit(client, idx_images(images)).json()
    one_copy = store.data_bytes()
    b = submit(client, gzip.compress(idx_images(images))).json()  # the same data set, gzipped
    c = submit(client, npy(images)).json()  # and as .npy
    assert a["dataset"]["sha256"] == b["dataset"]["sha256"] == c["dataset"]["sha256"]
    assert one_copy - before == len(store.dataset_bytes(a["dataset"]["sha256"])[0]) and store.data_bytes() == one_copy
    for job in (a, b, c):
        wait(client, job["id"])
    assert rows(client, a["id"]) == rows(client, b["id"]) == rows(client, c["id"])


def test_every_format_is_read(client: TestClient) -> None:
    images, labels = binary_images(3, seed=3), np.array([4, 5, 6])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.npy", npy(images))
        z.writestr("labels.npy", npy(labels))
    pngs = io.BytesIO()
    with zipfile.ZipFile(pngs, "w") as z:
        from PIL import Image

        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            z.writestr(f"{i:03d}.png", buffer.getvalue())
    floats = npy((images / 255).astype(np.float32).reshape(3, 784))
    jobs = {
        "npz": submit(client, archive.getvalue()),
        "png-zip": submit(client, pngs.getvalue()),
        "npy": submit(client, floats, labels=npy(labels)),
    }
    shas = set()
    for source, r in jobs.items():
        assert r.status_code == 202, r.text
        assert r.json()["dataset"]["source"] == source and r.json()["dataset"]["count"] == 3
        shas.add((r.json()["dataset"]["sha256"], r.json()["dataset"]["labels"]))
        wait(client, r.json()["id"])
    assert [r["label"] for r in rows(client, jobs["npz"].json()["id"])] == [4, 5, 6]
    assert len(shas) == 2  # with labels (npz, npy + labels) and without (png-zip): the same images either way
    assert len({sha for sha, _ in shas}) == 2
    r = client.post("/v1/jobs", json={"model": MODEL, "inputs": images.reshape(3, -1).tolist(), "scale": "byte", "estimators": [{"name": "iwae", "k": 50}], "labels": [4, 5, 6]})  # fmt: skip
    assert r.status_code == 202 and r.json()["dataset"]["source"] == "json"
    assert (r.json()["dataset"]["sha256"], True) in shas  # JSON inputs: the same canonical data set


def test_cancel_a_queued_and_a_running_job(client: TestClient) -> None:
    many = binary_images(64, seed=4)
    running = submit(client, npy(many), estimators=["iwae:200"]).json()  # 64 chunks of one input
    queued = submit(client, npy(many[:4]), estimators=["iwae:200"]).json()
    wait(client, running["id"], {"running"})
    r = client.delete(f"/v1/jobs/{queued['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["progress"]["done"] == 0
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 200
    stopped = wait(client, running["id"])
    assert stopped["state"] == "cancelled" and 0 < stopped["progress"]["done"] < 64
    assert len(rows(client, running["id"])) == stopped["progress"]["done"]  # finished chunks are kept
    assert client.delete(f"/v1/jobs/{running['id']}").json()["state"] == "cancelled"  # idempotent
    assert client.get(f"/v1/jobs/{queued['id']}/results").text == ""


def test_a_failing_job_says_why(checkpoint_dir: Path) -> None:
    with make_client(checkpoint_dir, deadline_s=1e-6) as c:
        wait_ready(c)
        job = submit(c, npy(binary_images(2))).json()
        failed = wait(c, job["id"])
    assert failed["state"] == "failed" and "deadline" in failed["error"] and failed["progress"]["done"] == 0


def test_events_stream_to_the_end(client: TestClient) -> None:
    job = submit(client, npy(binary_images(12, seed=5))).json()
    events = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1] == ("end", {"state": "succeeded"})
    progress = [data["progress"]["done"] for kind, data in events if kind == "progress"]
    assert progress == sorted(progress) and progress[-1] == 12


def test_list_newest_first_in_pages(client: TestClient) -> None:
    ids = [submit(client, npy(binary_images(1, seed=10 + i))).json()["id"] for i in range(3)]
    page = client.get("/v1/jobs?limit=2").json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next"] == "/v1/jobs?limit=2&offset=2"
    following = client.get(page["next"]).json()
    assert following["jobs"][0]["id"] == ids[0] and following["total"] == page["total"]


def _problem(r: Any, status: int, field: str, text: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body.get("field") == field or any(field in str(e.get("loc")) for e in body.get("errors", [])), body
    assert text in body["detail"], body


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        (b"not a data set at all", "data", "not an IDX file"),
        (gzip.compress(idx_images(binary_images(2)))[:-12], "data", "gzip data"),
        (idx_images(binary_images(2))[:-5], "data", "header says [2, 28, 28]"),
        (npy(np.zeros((2, 27, 27))), "data", "shape [27, 27]"),
        (npy(np.full((2, 784), np.nan)), "data[0]", "not finite"),
        (npy(np.full((2, 784), 1.5)), "data[0]", "outside [0, 1]"),
        (npy(np.full((2, 784), 300)), "data[0]", "outside integers 0..255"),
        (npy(np.zeros((0, 784))), "data", "holds no inputs"),
        (npy(np.array(["a", "b"])), "data", "shape"),
        (b"\x93NUMPY garbage", "data", "not a readable .npy"),
        (b"PK\x03\x04 not really a zip", "data", "not a readable zip"),
    ],
)
def test_bad_uploads_are_4xx_naming_what_is_wrong(client: TestClient, data: bytes, field: str, text: str) -> None:
    _problem(submit(client, data), 422, field, text)


def test_bad_archives_labels_and_fields(client: TestClient) -> None:
    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as z:
        z.writestr("a.png", b"x")
        z.writestr("notes.txt", b"x")
    _problem(submit(client, mixed.getvalue()), 422, "data", "only .png")
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("a.png", b"not a png")
    _problem(submit(client, broken.getvalue()), 422, "data[0]", "not a decodable")
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("weights.npy", npy(np.zeros(3)))
    _problem(submit(client, npz.getvalue()), 422, "data", "none named inputs")
    images = idx_images(binary_images(3))
    _problem(submit(client, images, labels=idx_labels(np.arange(2))), 422, "labels", "2 labels for 3 inputs")
    _problem(submit(client, images, labels=b"garbage"), 422, "labels", "not an IDX file")
    _problem(submit(client, images, estimators=["iwae"]), 422, "estimators[0]", "")
    _problem(submit(client, images, estimators=["iwae:50", "iwae:50"]), 422, "estimators", "twice")
    _problem(submit(client, images, estimators=["iwae:1000000"]), 422, "estimators[0].k", "")
    _problem(submit(client, images, model="nope"), 404, "name", "no model named")
    _problem(submit(client, images, model="tinybbb"), 422, "name", "")
    grey = npy(np.full((2, 784), 0.5, dtype=np.float32))
    _problem(submit(client, grey, binarize="none"), 422, "binarize", "")
    r = client.post("/v1/jobs", data={"model": MODEL}, files={"notes": ("notes.txt", b"", "text/plain")})
    _problem(r, 422, "data", "missing")
    _problem(client.post("/v1/jobs", data={"model": MODEL}), 415, "Content-Type")  # a form can carry no file
    as_file = {
        "data": ("d.npy", npy(binary_images(2)), "application/octet-stream"),
        "seed": ("s.txt", b"1", "text/plain"),
    }
    _problem(client.post("/v1/jobs", data={"model": MODEL}, files=as_file), 422, "seed", "expected text")
    _problem(client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}), 415, "Content-Type")
    _problem(client.post("/v1/jobs", json={"model": MODEL, "inputs": [[0] * 10]}), 422, "estimators")
    _problem(client.post("/v1/jobs", json={"model": MODEL, "inputs": [[0] * 784], "estimators": [{"name": "iwae", "k": 5}], "labels": [1, 2]}), 422, "labels")  # fmt: skip


def test_limits(checkpoint_dir: Path) -> None:
    data = npy(binary_images(5))
    with make_client(checkpoint_dir, max_upload_bytes=2048) as c:
        _problem(submit(c, data), 413, "body")
    with make_client(checkpoint_dir, max_job_inputs=4) as c:
        wait_ready(c)
        _problem(submit(c, data), 413, "data", "over 4")
    with make_client(checkpoint_dir, max_store_bytes=2048) as c:
        wait_ready(c)
        _problem(submit(c, data), 507, "data")
    # An IDX header declaring more than the largest acceptable data set: refused from its first bytes.
    bomb = gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 100_000, 28, 28) + b"\0" * (64 * 784 * 8 + 10_000))
    with make_client(checkpoint_dir, max_job_inputs=64) as c:
        wait_ready(c)
        _problem(submit(c, bomb), 413, "data", "declares")
    with make_client(checkpoint_dir, max_active_jobs=1, job_chunk_evals=50) as c:
        wait_ready(c)
        assert submit(c, npy(binary_images(40)), estimators=["iwae:50"]).status_code == 202
        _problem(submit(c, data), 429, "Authorization", "queued or running")


def test_unknown_job_and_auth(checkpoint_dir: Path) -> None:
    with make_client(checkpoint_dir, api_token="s3cret") as c:
        wait_ready(c)
        for method, path in [
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/x"),
            ("DELETE", "/v1/jobs/x"),
        ]:
            assert c.request(method, path).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        for suffix in ("", "/events", "/results"):
            _problem(c.get(f"/v1/jobs/{'0' * 32}{suffix}", headers=auth), 404, "id", "no job")
        _problem(c.get("/v1/jobs/not-a-job-id", headers=auth), 404, "id")
        _problem(c.get(f"/v1/jobs/{'0' * 32}/results?format=xml", headers=auth), 422, "format")


def test_the_migrations_make_the_tables_the_code_uses(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from logpx.app.jobs.store import JobStore, metadata

    store = JobStore(f"sqlite:///{tmp_path / 'a.db'}")
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    JobStore(store.url)  # a second start migrates nothing and fails nothing


def test_a_database_that_never_answers_stops_the_service_after_the_wait() -> None:
    import sqlalchemy as sa

    from logpx.app.jobs.store import open_store
    from tests.local_server import free_port

    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError):
        open_store(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1", wait_s=1.5)
    assert 1.5 <= time.monotonic() - started < 10  # it waited, then gave up


def test_a_unique_prefix_names_a_job(client: TestClient) -> None:
    """The CLI's progress bar shows `job 11a079ea`: that prefix works wherever the id does, as git's do."""
    job = submit(client, npy(binary_images(2, seed=40))).json()["id"]
    assert client.get(f"/v1/jobs/{job[:8]}").json()["id"] == job
    wait(client, job[:8])
    assert len(rows(client, job[:8])) == 2
    short = client.get(f"/v1/jobs/{job[:3]}")
    assert short.status_code == 404 and "unique prefix" in short.json()["detail"]
    assert client.get(f"/v1/jobs/{'f' * 32}").status_code == 404


def test_result_rows_count_against_the_store_and_finished_jobs_can_be_deleted(checkpoint_dir: Path) -> None:
    """Rows were not counted (16 estimators: 14.8 KB a row, 1.5 GB for 100,000 inputs) and jobs could not be
    deleted. Now a job whose rows would not fit is a 507 that says what to delete, deleting a finished job gives
    its rows and unused data set back, and an active one cannot be deleted."""
    data = npy(binary_images(30, seed=60))
    with make_client(checkpoint_dir, max_store_bytes=100_000) as c:
        wait_ready(c)
        store = c.app.state.jobs  # type: ignore[attr-defined]
        first = submit(c, data, estimators=["iwae:20"])
        assert first.status_code == 202, first.text
        job = first.json()["id"]
        wait(c, job)
        held = store.stored_bytes()
        assert held > 30 * 500  # the rows count now, not only the data set
        # A data set (24 KB) and 30 inputs x 2 estimators of rows (about 62 KB) beside what is held: over 100 KB.
        refused = submit(c, npy(binary_images(30, seed=61)), estimators=["iwae:20", "jvi:20:1"])
        _problem(refused, 507, "data", "delete finished jobs")
        assert c.delete(f"/v1/jobs/{job}?purge=true").status_code == 204
        assert c.get(f"/v1/jobs/{job}").status_code == 404 and store.stored_bytes() == 0
        assert submit(c, npy(binary_images(30, seed=61)), estimators=["iwae:20", "jvi:20:1"]).status_code == 202
    with make_client(checkpoint_dir) as c:
        wait_ready(c)
        # 50 inputs of short AIS, a chunk of one input each: active for tens of seconds, cancelled within one.
        long = submit(c, npy(binary_images(50, seed=62)), estimators=["iwae:64@ais:300"]).json()["id"]
        _problem(c.delete(f"/v1/jobs/{long}?purge=true"), 409, "id", "cancel it first")
        c.delete(f"/v1/jobs/{long}")
        wait(c, long, timeout=120)
        assert c.delete(f"/v1/jobs/{long}?purge=true").status_code == 204


def test_finished_jobs_past_their_retention_are_deleted(checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from logpx.app.jobs import runner

    monkeypatch.setattr(runner, "SWEEP_S", 0.0)  # sweep whenever idle, not once a minute
    with make_client(checkpoint_dir, job_retention_s=0.3, job_poll_s=0.05) as c:
        wait_ready(c)
        job = submit(c, npy(binary_images(2, seed=63)), estimators=["iwae:20"]).json()["id"]
        assert wait(c, job)["state"] == "succeeded"
        deadline = time.monotonic() + 10
        while c.get(f"/v1/jobs/{job}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.app.state.jobs.stored_bytes() == 0  # type: ignore[attr-defined]  # rows and data set went with it
