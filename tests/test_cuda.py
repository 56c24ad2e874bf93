"""The CUDA paths: the same models, samplers and service on a GPU agree with the CPU. Skipped where torch sees
no CUDA device (this project's CI machines); run on a GPU machine with ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from logpx.estimators import EstimatorSpec, estimate
from logpx.io import load_checkpoint
from logpx.plan import AIS
from logpx.samplers import ais

from .helpers import make_client, poor_encoder_model, wait_ready

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch here")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints"
DIGIT = ROOT / "tests" / "data" / "mnist-50000-label3.png"


@pytest.mark.parametrize("name", ["vae1-iwae50", "vae2-iwae50"])
def test_same_noise_same_log_weights_on_cpu_and_cuda(name: str) -> None:
    cpu = load_checkpoint(SHIPPED / f"{name}.safetensors", "cpu").model
    gpu = load_checkpoint(SHIPPED / f"{name}.safetensors", "cuda").model
    x = (torch.rand(4, cpu.input_dim, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        noise = cpu.sample_noise(64, 4, torch.Generator().manual_seed(1))
        on_cpu = cpu.log_weights_from_noise(x, noise)
        on_gpu = gpu.log_weights_from_noise(x.cuda(), noise.cuda())
    # float32 arithmetic in different orders: log-weights near -100 agree to a few 1e-5 relative.
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-3)


def test_ais_on_cuda_recovers_exact_evidence() -> None:
    model = poor_encoder_model().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        x = model.sample_x(torch.randn(6, model.latent_dim, generator=g, device="cuda", dtype=torch.float64), g)
        exact = model.exact_log_px(x)
        result = ais(model, x, 64, AIS(steps=2000, leapfrog=5), g)
    est = estimate(result.log_w, EstimatorSpec("iwae", 64), sampler=AIS())
    error = (est.log_px - exact).cpu()
    assert (error.abs() <= 3 * est.std_err.cpu()).all(), (error, est.std_err)


@pytest.fixture(scope="module")
def clients():  # type: ignore[no-untyped-def]
    with make_client(SHIPPED, device="cuda") as gpu, make_client(SHIPPED, device="cpu") as cpu:
        wait_ready(gpu, timeout=120)
        wait_ready(cpu, timeout=120)
        yield gpu, cpu


def _evidence(client, estimator: str, **fields: str) -> dict:  # type: ignore[no-untyped-def]
    with DIGIT.open("rb") as f:
        response = client.post(
            "/v1/models/vae1-iwae50/evidence/images",
            files={"files": ("digit.png", f, "image/png")},
            data={"estimator": estimator, "k": "2000", "seed": "3", **fields},
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("estimator", ["iwae", "jvi"])
def test_the_service_on_cuda_agrees_with_the_cpu_within_standard_errors(clients, estimator: str) -> None:  # type: ignore[no-untyped-def]
    gpu, cpu = clients
    on_gpu, on_cpu = _evidence(gpu, estimator), _evidence(cpu, estimator)
    assert on_gpu["device"].startswith("cuda") and on_cpu["device"] == "cpu"
    a, b = on_gpu["results"][0], on_cpu["results"][0]
    # Different generators draw different noise: the two estimates are independent, each with its error.
    assert abs(a["log_px"] - b["log_px"]) <= 4 * math.hypot(a["std_err"], b["std_err"]) + 1e-3
    assert a["verdict"]["level"] == b["verdict"]["level"]


def test_same_seed_same_answer_on_cuda(clients) -> None:  # type: ignore[no-untyped-def]
    gpu, _ = clients
    first, second = _evidence(gpu, "iwae"), _evidence(gpu, "iwae")
    assert first["results"] == second["results"]


def test_ais_over_http_on_cuda(clients) -> None:  # type: ignore[no-untyped-def]
    gpu, _ = clients
    out = _evidence(gpu, "iwae", sampler=AIS(), steps="200", k="16")
    result = out["results"][0]
    assert math.isfinite(result["log_px"]) and result["verdict"]["level"] in {"reliable", "caution", "unreliable"}


def test_a_job_on_cuda_equals_direct_requests_on_the_same_draws(clients) -> None:  # type: ignore[no-untyped-def]
    from logpx.app.jobs.chunks import chunk_seed

    gpu, _ = clients
    x = (torch.rand(30, 784, generator=torch.Generator().manual_seed(5)) < 0.2).int().tolist()
    job = gpu.post(
        "/v1/jobs", json={"model": "vae1-iwae50", "inputs": x, "estimators": [{"name": "iwae", "k": 500}], "seed": 2}
    )
    assert job.status_code == 202, job.text
    job_id, chunk = job.json()["id"], job.json()["chunk_size"]
    while (status := gpu.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
        pass
    assert status["state"] == "succeeded", status
    rows = [json.loads(line) for line in gpu.get(f"/v1/jobs/{job_id}/results").text.splitlines()]
    for c, start in enumerate(range(0, 30, chunk)):
        direct = gpu.post(
            "/v1/models/vae1-iwae50/evidence",
            json={
                "inputs": x[start : start + chunk],
                "estimator": {"name": "iwae", "k": 500},
                "seed": chunk_seed(2, c),
            },
        ).json()
        assert [r["log_px"] for r in direct["results"]] == [
            r["estimates"][0]["log_px"] for r in rows[start : start + chunk]
        ]
