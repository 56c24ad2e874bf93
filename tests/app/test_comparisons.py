"""Paired model comparison over HTTP: two linear-Gaussian models whose evidence is known exactly, scored on
the same 500 inputs as one comparison; every model a job of its own; one clear 422 for models that cannot
score the same data."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from logpx.families import LinearGaussian
from logpx.io.checkpoint import save_checkpoint

from ..helpers import (
    DATASET,
    TRAINING,
    assert_problem,
    linear_gaussian,
    make_client,
    sample_linear_gaussian,
    wait_ready,
)

DIM = 20
TERMINAL = {"succeeded", "failed", "cancelled"}


def _noisier(model: LinearGaussian, sigma: float) -> LinearGaussian:
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.log_noise.fill_(math.log(sigma))
    return other


def _gaussian(model: LinearGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's marginal p(x) = N(b, W W^T + sigma^2 I), in float64."""
    w, b = model.weight.detach().double(), model.bias.detach().double()
    return b, w @ w.T + torch.exp(2 * model.log_noise.detach().double()) * torch.eye(w.shape[0], dtype=torch.float64)


def _kl(p: LinearGaussian, q: LinearGaussian) -> float:
    """E_{x ~ p}[log p(x) - log q(x)]: the population mean difference of the two models' evidence on data
    drawn from p, in closed form (two Gaussians)."""
    (m0, s0), (m1, s1) = _gaussian(p), _gaussian(q)
    inv = torch.linalg.inv(s1)
    d = m1 - m0
    return float(0.5 * (torch.trace(inv @ s0) + d @ inv @ d - m0.shape[0] + torch.logdet(s1) - torch.logdet(s0)))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LinearGaussian, LinearGaussian]:
    folder = tmp_path_factory.mktemp("lg-pair")
    a = linear_gaussian(seed=3, latent=2, input_dim=DIM)
    b = _noisier(a, 0.055)
    save_checkpoint(folder / "lg-a.safetensors", a, training=TRAINING, dataset=DATASET)
    save_checkpoint(folder / "lg-b.safetensors", b, training=TRAINING, dataset=DATASET)
    save_checkpoint(folder / "lg-784.safetensors", linear_gaussian(seed=1), training=TRAINING, dataset=DATASET)
    return folder, a, b


def _wait(client: TestClient, cid: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        out = client.get(f"/v1/comparisons/{cid}").json()
        if out["state"] in TERMINAL:
            return out
        assert time.monotonic() < deadline, out["state"]
        time.sleep(0.1)


def test_the_paired_difference_finds_the_exact_difference_with_a_far_smaller_error(
    models: tuple[Path, LinearGaussian, LinearGaussian],
) -> None:
    folder, a, b = models
    x = sample_linear_gaussian(a, 500, seed=11)
    with make_client(folder, max_job_inputs=1000) as client:
        wait_ready(client)
        body = {"models": ["lg-a", "lg-b"], "inputs": x.tolist(), "estimators": [{"name": "iwae", "k": 100}], "seed": 5}
        r = client.post("/v1/comparisons", json=body)
        assert r.status_code == 202, r.text
        cid = r.json()["id"]
        assert r.headers["location"] == f"/v1/comparisons/{cid}" and len(r.json()["jobs"]) == 2
        out = _wait(client, cid)
        listed = client.get("/v1/jobs").json()["jobs"]
        csv = client.get(f"/v1/comparisons/{cid[:8]}/results").text.splitlines()
        briefs = client.get("/v1/comparisons").json()["comparisons"]
    assert out["state"] == "succeeded" and out["done"] == 500
    (diff,) = out["differences"]
    exact = _kl(a, b)  # E over data from model a of log p_a(x) - log p_b(x)
    with torch.no_grad():
        same_inputs = float((a.exact_log_px(x) - b.exact_log_px(x)).double().mean())
    assert abs(diff["mean"] - exact) <= 3 * diff["std_err"], (diff, exact)
    assert abs(diff["mean"] - same_inputs) <= 3 * diff["mc_std_err"] + 0.01, (diff, same_inputs)
    assert diff["unpaired_std_err"] >= 3 * diff["std_err"], diff  # the shared spread over inputs cancels in pairs
    assert diff["interval"][0] <= diff["mean"] <= diff["interval"][1] and 0 <= diff["a_better"] <= 1
    assert diff["verdict"]["level"] in ("reliable", "caution") and "lg-a - lg-b" in diff["verdict"]["reasons"][0]
    assert [s["model"] for s in out["standings"]] == ["lg-a", "lg-b"]
    assert {j["comparison"] for j in listed} == {cid}
    assert (
        csv[0]
        == "index,label,lg-a.iwae:100.log_px,lg-a.iwae:100.std_err,lg-a.iwae:100.verdict,lg-b.iwae:100.log_px,lg-b.iwae:100.std_err,lg-b.iwae:100.verdict"
    )
    assert len(csv) == 501 and briefs[0]["id"] == cid and briefs[0]["state"] == "succeeded"


def test_models_that_cannot_score_the_same_data_are_one_clear_422(
    models: tuple[Path, LinearGaussian, LinearGaussian],
) -> None:
    folder, _, _ = models
    x = np.full((2, DIM), 0.5).tolist()
    with make_client(folder) as client:
        wait_ready(client)
        body = {"inputs": x, "estimators": [{"name": "iwae", "k": 10}]}
        problem = assert_problem(
            client.post("/v1/comparisons", json={**body, "models": ["lg-a", "lg-784"]}), 422, "models"
        )
        assert "[20]" in problem["detail"] and "[28, 28]" in problem["detail"]
        assert_problem(client.post("/v1/comparisons", json={**body, "models": ["lg-a", "lg-a"]}), 422, "models")
        assert_problem(client.post("/v1/comparisons", json={**body, "models": ["lg-a", "nope"]}), 404)
        assert_problem(client.get("/v1/comparisons/abcdef12"), 404, "id")
