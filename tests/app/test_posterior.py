"""POST /v1/models/{name}/posterior: the page's heat map, checked against a linear-Gaussian model whose
evidence is known in closed form (float32 model, so agreement to a few 1e-3 nats); capabilities by type."""

from __future__ import annotations

import math

import numpy as np
import torch
from fastapi.testclient import TestClient

from ..helpers import linear_gaussian, sample_linear_gaussian


def test_posterior_grid_over_http_holds_the_exact_evidence(client: TestClient) -> None:
    model = linear_gaussian()
    x = sample_linear_gaussian(model, 1, seed=3).clamp(0, 1)
    r = client.post("/v1/models/lg/posterior", json={"inputs": x.tolist(), "grid": 120, "binarize": "none"})
    assert r.status_code == 200, r.text
    out = r.json()
    density = np.exp(np.array(out["log_density"]))
    cell = (out["z1"][1] - out["z1"][0]) * (out["z2"][1] - out["z2"][0])
    assert len(out["z1"]) == len(out["z2"]) == 120 and abs(density.sum() * cell - 1) < 1e-9
    with torch.no_grad():
        exact = float(model.exact_log_px(x)[0])
    assert abs(out["log_px"] - exact) < 5e-3, (out["log_px"], exact)
    assert out["verdict"]["level"] == "reliable" and out["edge_mass"] < 1e-4
    assert np.allclose(np.array(out["q_cov"]), np.array(out["q_cov"]).T) and all(
        math.isfinite(v) for v in out["q_mean"]
    )


def test_posterior_refuses_what_it_cannot_draw(client: TestClient) -> None:
    r = client.post("/v1/models/tinybbb/posterior", json={"inputs": [[0.0] * 784]})
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = client.post("/v1/models/tiny/posterior", json={"inputs": [[0.0] * 784, [0.0] * 784]})
    assert r.status_code == 422 and "inputs" in r.text
    r = client.post("/v1/models/tiny/posterior", json={"inputs": [[0.0] * 784], "grid": 1000})
    assert r.status_code == 422 and "grid" in r.text


def test_capabilities_come_from_the_model_type(client: TestClient) -> None:
    models = {m["name"]: m["capabilities"] for m in client.get("/v1/models").json()["models"]}
    assert models["tiny"] == ["evidence", "compare", "bdmc", "jobs", "posterior"]  # a 2-D latent
    assert models["tinybbb"] == ["predict"] and models["broken"] == []
