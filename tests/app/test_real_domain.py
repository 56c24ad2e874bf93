"""Real-valued data (issue: "every input value outside [0, 1] is a 422"): a linear-Gaussian model whose
checkpoint declares its domain `real` takes any finite value, over HTTP and in a job, and its estimates
agree with its exact evidence; a model of another domain refuses `scale: real` with one clear 422."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from logpx.io.checkpoint import save_checkpoint

from ..helpers import DATASET, TRAINING, assert_problem, make_client, poor_encoder_model, wait_ready


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("real")
    save_checkpoint(d / "lgreal.safetensors", poor_encoder_model(input_dim=10, latent=2), training=TRAINING,
                    dataset=DATASET, extra={"domain": "real"})  # fmt: skip
    save_checkpoint(
        d / "lgunit.safetensors", poor_encoder_model(input_dim=10, latent=2), training=TRAINING, dataset=DATASET
    )
    return d


def _real_inputs(n: int) -> np.ndarray:
    """Draws from the model itself: real vectors, some values below 0 and above 1."""
    model = poor_encoder_model(input_dim=10, latent=2)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x = z @ model.weight.T + model.bias + 0.1 * torch.randn(n, 10, generator=g, dtype=torch.float64)
    return x.numpy()


def test_a_real_valued_model_scores_real_vectors_against_its_exact_evidence(folder: Path) -> None:
    x = _real_inputs(12)
    assert (x < 0).any() and (x > 1).any()
    exact = poor_encoder_model(input_dim=10, latent=2).exact_log_px(torch.from_numpy(x).float().double())
    with make_client(folder) as client:
        wait_ready(client)
        assert client.get("/v1/models/lgreal").json()["domain"] == "real"
        body = {"inputs": x.tolist(), "scale": "real", "estimator": {"name": "iwae", "k": 5000}, "seed": 1}
        out = client.post("/v1/models/lgreal/evidence", json=body).json()
        for r, e in zip(out["results"], exact.tolist(), strict=True):
            assert r["log_px"] <= e + 3 * r["std_err"] and e - r["log_px"] < 0.1, (r["log_px"], e)
            assert r["bits_per_dim"] is None  # real values of no stated scale: no discrete reading
        unit = client.post("/v1/models/lgunit/evidence", json={**body, "inputs": [[0.5] * 10], "scale": "unit"}).json()
        (u,) = unit["results"]  # a density on [0, 1], read at 8-bit resolution: -log2 p / D + 8
        assert u["bits_per_dim"] == pytest.approx(-u["log_px"] / (10 * math.log(2)) + 8)
        buffer = io.BytesIO()
        np.save(buffer, x.astype(np.float32))
        job = client.post("/v1/jobs", data={"model": "lgreal", "estimators": ["iwae:5000"], "seed": "1"},
                          files={"data": ("x.npy", buffer.getvalue())}).json()  # fmt: skip
        deadline = time.monotonic() + 60
        while (status := client.get(f"/v1/jobs/{job['id']}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rows = client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
        problem = assert_problem(client.post("/v1/models/lgunit/evidence", json={**body}), 422, "scale")
    assert status["state"] == "succeeded" and len(rows) == 12
    for row, e in zip(rows, exact.tolist(), strict=True):  # the job scored the same real vectors
        assert abs(json.loads(row)["estimates"][0]["log_px"] - e) < 0.1
    assert "domain is 'unit'" in problem["detail"]


def test_a_binned_reading_above_probability_one_is_no_number() -> None:
    """A density on [0, 1] so peaked that its 8-bit bin would hold a probability above 1 has no bits/dim."""
    from logpx.estimators import bits_per_dim

    bits = bits_per_dim(torch.tensor([10_000.0, -100.0]), 10, 8.0)
    assert torch.isnan(bits[0]) and float(bits[1]) == pytest.approx(100 / (10 * math.log(2)) + 8)


def test_a_normalised_gaussian_model_states_its_constant_and_scores_x_as_sent(tmp_path: Path) -> None:
    """A Gaussian VAE trained on (x - m) / s: the service scores the image as sent (in [0, 1]), its log p(x)
    includes the change of variables, and the model's detail states that constant in nats and bits."""
    from logpx.families import MLPVAE, MLPVAEConfig

    torch.manual_seed(0)
    norm = {"mean": 0.1307, "std": 0.3081}
    config = MLPVAEConfig(input_dim=16, latent=2, encoder=[8], decoder=[8], likelihood="gaussian", normalization=norm)
    model = MLPVAE(config).eval()
    save_checkpoint(tmp_path / "normed.safetensors", model, training=TRAINING, dataset=DATASET)
    x = torch.rand(1, 16, generator=torch.Generator().manual_seed(1))
    with make_client(tmp_path) as client:
        wait_ready(client)
        detail = client.get("/v1/models/normed").json()
        body = {"inputs": x.tolist(), "estimator": {"name": "iwae", "k": 64}, "seed": 3}
        (r,) = client.post("/v1/models/normed/evidence", json=body).json()["results"]
    constant = -16 * math.log(0.3081)
    assert detail["domain"] == "unit" and f"{constant:+.4f} nats" in detail["bits_per_dim"]
    assert r["bits_per_dim"] == pytest.approx(-r["log_px"] / (16 * math.log(2)) + 8, rel=1e-6)
    with torch.no_grad():  # the same network without the constants, on the normalised input, plus the constant
        plain = MLPVAE(MLPVAEConfig(**{**config.__dict__, "normalization": None})).eval()
        plain.load_state_dict(model.state_dict())
        y = (x - 0.1307) / 0.3081
        log_w = plain.log_weights(y, 4096, torch.Generator().manual_seed(5)) + constant
        reference = float(torch.logsumexp(log_w, 0) - math.log(4096))
        w = torch.exp(log_w - log_w.max())
        reference_se = float(w.std() / (w.mean() * math.sqrt(4096)))  # delta method, as the service's
    assert abs(r["log_px"] - reference) <= 3 * math.hypot(r["std_err"], reference_se)
