"""``steps: auto`` over HTTP: the first request starts the model's certification and is told to come back
(409), the certified setting then runs with its certificate cited, the certificate is reused (also by a job
and after a restart, from the store) and is gone once the checkpoint file changes."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from logpx.families import LatentVariableModel
from logpx.io.checkpoint import load_checkpoint, save_checkpoint
from logpx.samplers import certify, simulate

from ..helpers import DATASET, TRAINING, assert_problem, make_client, poor_encoder_model, wait_ready

pytestmark = pytest.mark.slow
TOLERANCE = 0.1
AUTO = {"name": "ais", "steps": "auto", "leapfrog": 5, "tolerance": TOLERANCE}


def _save(path: Path, seed: int) -> None:
    # 60 dimensions, 3 latents, a poor encoder: the search needs a few doublings at these settings.
    save_checkpoint(path, poor_encoder_model(seed=seed), training=TRAINING, dataset=DATASET, extra={"domain": "real"})


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint folder holding ``lg`` (seed 0), and a data folder for the job store."""
    models = tmp_path / "models"
    models.mkdir()
    _save(models / "lg.safetensors", seed=0)
    return models, tmp_path / "data"


def _wait_certified(client, name: str, timeout: float = 180.0) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/models/{name}/certificates").json()
        runs = body["certifications"]
        if runs and runs[-1]["status"] != "running":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def test_auto_steps_certify_once_run_certified_and_expire_with_the_checkpoint(tmp_path: Path) -> None:
    models, data = _folders(tmp_path)
    _save(models / "lg2.safetensors", seed=2)
    model = poor_encoder_model()
    with torch.no_grad():
        x, _ = simulate(model, 4, torch.Generator().manual_seed(4))
        exact = model.exact_log_px(x)
    x = x.float().numpy()
    body = {"inputs": x.tolist(), "scale": "real", "estimator": {"name": "iwae", "k": 16}, "sampler": AUTO, "seed": 2}
    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        pending = client.post("/v1/models/lg/evidence", json=body)
        assert_problem(pending, 409, "sampler.steps")
        assert "certification is running" in pending.json()["detail"]
        known = _wait_certified(client, "lg")
        run = known["certifications"][-1]
        assert run["status"] == "certified", run
        cert = run["certificate"]
        assert cert["gap_bound"] <= TOLERANCE and cert["chains"] == 16 and cert["inputs"] == 16
        # Every trial with fewer steps failed the bound; every trial is stored.
        fewer = [t for t in run["trials"] if t["setting"]["steps"] < cert["setting"]["steps"]]
        assert fewer and all(t["gap_bound"] > TOLERANCE for t in fewer), run["trials"]
        assert len(known["certificates"]) == len(run["trials"])

        out = client.post("/v1/models/lg/evidence", json=body)
        assert out.status_code == 200, out.text
        out = out.json()
        assert out["estimator"]["sampler"]["steps"] == cert["setting"]["steps"]
        assert out["estimator"]["certificate"]["plan"] == cert["plan"]
        for r, e in zip(out["results"], exact.tolist(), strict=True):
            assert abs(r["log_px"] - e) <= TOLERANCE + 3 * r["std_err"], (r["log_px"], e)
        # 16 chains on a setting certified with 16: no "too few chains for k-hat" caution.
        assert not any("too few" in reason for r in out["results"] for reason in r["verdict"]["reasons"])

        started = time.monotonic()
        again = client.post("/v1/models/lg/certify", json={"tolerance": TOLERANCE, "leapfrog": 5})
        assert again.status_code == 200 and again.json()["status"] == "certified"
        assert again.json()["certificate"] == cert and time.monotonic() - started < 1.0

        job = client.post(
            "/v1/jobs",
            json={
                "model": "lg",
                "inputs": x.tolist(),
                "scale": "real",
                "seed": 1,
                "estimators": [{"name": "iwae", "k": 16, "sampler": AUTO}],
            },
        )
        assert job.status_code == 202, job.text
        assert job.json()["summary"][0]["estimator"]["sampler"]["steps"] == cert["setting"]["steps"]
        # A comparison of several models cannot resolve auto once for all: a 422 naming the field.
        comparison = client.post(
            "/v1/comparisons",
            json={
                "models": ["lg", "lg2"],
                "inputs": x.tolist(),
                "scale": "real",
                "estimators": [{"name": "iwae", "k": 16, "sampler": AUTO}],
            },
        )
        assert comparison.status_code == 422 and "steps" in comparison.json()["field"], comparison.text

    with make_client(models, data_dir=data) as client:  # restarted: the store keeps the certificates
        wait_ready(client)
        assert (
            client.get("/v1/models/lg/certificates").json()["certificates"][-1]["plan"]
            == known["certificates"][-1]["plan"]
        )
        assert client.post("/v1/models/lg/evidence", json=body).status_code == 200

    _save(models / "lg.safetensors", seed=1)  # the file changes: its certificates do not carry over
    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        assert client.get("/v1/models/lg/certificates").json()["certificates"] == []
        assert_problem(client.post("/v1/models/lg/evidence", json=body), 409, "sampler.steps")


def test_logpx_certify_waits_for_the_search_and_prints_every_trial(tmp_path: Path) -> None:
    from tests.local_server import LocalServer

    _save(tmp_path / "lg.safetensors", seed=0)
    with LocalServer(tmp_path) as server:
        run = [str(Path(sys.executable).with_name("logpx")), "certify", "--url", server.url, "--model", "lg"]
        args = ["--tolerance", str(TOLERANCE), "--leapfrog", "5"]
        out = subprocess.run([*run, *args], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "ais:50:5" in out.stdout and "keeps the BDMC gap under 0.1 nats" in out.stdout, out.stdout
        assert "--sampler ais:auto:5:encoder:sigmoid:0.1" in out.stdout
        again = subprocess.run([*run, *args], capture_output=True, text=True, timeout=60)  # stored: at once
        assert again.returncode == 0 and "certifying" not in again.stderr, again.stderr
        bad = subprocess.run([*run, "--tolerance", "-1"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "tolerance" in bad.stderr, bad.stderr


def test_a_search_that_finds_no_schedule_is_answered_at_once_not_restarted(tmp_path: Path) -> None:
    """A tolerance no schedule within LOGPX_MAX_AIS_STEPS meets: the first auto request starts the search (409);
    once it has ended uncertified, the same request is a 422 at once saying what to change, and POST certify
    answers the finished search (200) instead of running it again."""
    _save(tmp_path / "lg.safetensors", seed=0)
    tight = {**AUTO, "tolerance": 0.001}
    body = {"inputs": [[0.0] * 60], "scale": "real", "estimator": {"name": "iwae", "k": 16}, "sampler": tight}
    with make_client(tmp_path, max_ais_steps=100) as client:
        wait_ready(client)
        assert_problem(client.post("/v1/models/lg/evidence", json=body), 409, "sampler.steps")
        run = _wait_certified(client, "lg")["certifications"][-1]
        assert run["status"] == "uncertified" and [t["setting"]["steps"] for t in run["trials"]] == [50, 100]
        started = time.monotonic()
        refused = assert_problem(client.post("/v1/models/lg/evidence", json=body), 422, "sampler.steps")
        assert "raise the tolerance" in refused["detail"] and time.monotonic() - started < 1.0
        again = client.post("/v1/models/lg/certify", json={"tolerance": 0.001, "leapfrog": 5})
        assert again.status_code == 200 and again.json()["status"] == "uncertified"
        assert len(client.get("/v1/models/lg/certificates").json()["certifications"]) == 1


def test_a_certification_stopped_with_its_server_goes_on_from_its_trials(tmp_path: Path) -> None:
    """Nothing accepted is lost: the search is stored when accepted; a server stopped mid-search gives its lease
    back, and the next server of that file takes it up, reuses the trials already measured as they stand, and
    ends where the uninterrupted search ends."""
    models, data = _folders(tmp_path)
    request = {"tolerance": 0.05, "leapfrog": 5}
    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        assert client.post("/v1/models/lg/certify", json=request).status_code == 202
        deadline = time.monotonic() + 120
        while not (runs := client.get("/v1/models/lg/certificates").json()["certifications"])[-1]["trials"]:
            assert time.monotonic() < deadline, runs
            time.sleep(0.02)
    assert runs[-1]["status"] == "running", runs  # stopped mid-search
    before = runs[-1]["trials"]
    restarted = datetime.datetime.now(datetime.UTC)
    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        known = _wait_certified(client, "lg")
    (run,) = known["certifications"]
    assert run["status"] == "certified" and run["trials"][: len(before)] == before, (before, run["trials"])
    assert len(known["certificates"]) == len(run["trials"])  # none measured twice
    assert datetime.datetime.fromisoformat(run["trials"][-1]["created"]) > restarted  # the search went on here
    model = load_checkpoint(models / "lg.safetensors").model
    assert isinstance(model, LatentVariableModel)
    uninterrupted = certify(model, 0.05, leapfrog=5, checkpoint=known["checkpoint"])
    assert [t.setting.temperatures for t in uninterrupted.trials] == [t["setting"]["steps"] for t in run["trials"]]
    gaps = [t["mean_gap"] for t in run["trials"]]
    assert [t.mean_gap for t in uninterrupted.trials] == pytest.approx(gaps, rel=1e-6, abs=1e-9)


def test_replicas_sharing_a_store_run_one_certification(tmp_path: Path) -> None:
    """Two servers on one job store: the request sent to the second finds the first one's search (the same
    certification, listed by both) instead of starting another."""
    models, data = _folders(tmp_path)
    request = {"tolerance": 0.05, "leapfrog": 5}
    # One after the other: ready means the store is open, and two migrations of one SQLite file at once collide.
    with make_client(models, data_dir=data) as first:
        wait_ready(first)
        with make_client(models, data_dir=data) as second:
            wait_ready(second)
            started = first.post("/v1/models/lg/certify", json=request)
            assert started.status_code == 202, started.text
            again = second.post("/v1/models/lg/certify", json=request)
            assert again.status_code == 202 and again.json()["status"] == "running", again.text
            for client in (first, second):
                (run,) = client.get("/v1/models/lg/certificates").json()["certifications"]
                assert run["status"] == "running" and run["request"] == started.json()["request"], run


def test_a_store_that_does_not_answer_is_a_503_not_a_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import exc as sa_exc

    models, data = _folders(tmp_path)

    def locked(*args: object) -> None:
        raise sa_exc.OperationalError("SELECT", {}, Exception("database is locked"))

    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        monkeypatch.setattr(client.app.state.certifier.store, "certifications", locked)  # type: ignore[attr-defined]
        for r in (
            client.post("/v1/models/lg/certify", json={"tolerance": 0.1, "leapfrog": 5}),
            client.get("/v1/models/lg/certificates"),
        ):
            problem = assert_problem(r, 503)
            assert "database is locked" in problem["detail"] and r.headers["Retry-After"], problem


def test_a_wrong_input_is_refused_before_steps_auto_starts_a_certification(tmp_path: Path) -> None:
    models, data = _folders(tmp_path)
    body = {"inputs": [[0.0]], "scale": "real", "estimator": {"name": "iwae", "k": 16}, "sampler": AUTO}
    with make_client(models, data_dir=data) as client:
        wait_ready(client)
        assert_problem(client.post("/v1/models/lg/evidence", json=body), 422, "inputs[0]")
        assert client.get("/v1/models/lg/certificates").json()["certifications"] == []
