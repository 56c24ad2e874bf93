"""Tiny models and checkpoint directories for the tests: no network, no data from outside the repository."""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch.distributions import AffineTransform, SigmoidTransform, TransformedDistribution, Uniform

from logpx.app.config import Settings
from logpx.app.main import create_app
from logpx.families.bbb import BayesMLP, BBBConfig
from logpx.families.linear_gaussian import LinearGaussian, LinearGaussianConfig
from logpx.families.vae import VAE, VAEConfig
from logpx.io.checkpoint import save_checkpoint

TRAINING = {"objective": "iwae", "k": 5, "order": None, "epochs": 0, "seed": 0}
DATASET = {"name": "synthetic", "sha256": "0" * 64}


def tiny_vae(seed: int = 0, layers: int = 1) -> VAE:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VAE(VAEConfig(layers=layers, hidden=[16], latent=2, hidden2=[8], latent1=4)).eval()


def linear_gaussian(seed: int = 0, latent: int = 2, input_dim: int = 784) -> LinearGaussian:
    """A linear-Gaussian model with a deliberately imperfect encoder (shrunk mean, widened std)."""
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussian(LinearGaussianConfig(input_dim=input_dim, latent=latent))
    with torch.no_grad():
        model.weight.copy_(torch.randn(input_dim, latent, generator=g) * 0.02)
        model.bias.copy_(0.45 + 0.1 * torch.rand(input_dim, generator=g))
        model.log_noise.fill_(math.log(0.05))
        post_map, post_cov = model.exact_posterior()
        model.enc_weight.copy_(0.9 * post_map)
        model.enc_bias.copy_(-0.9 * post_map @ model.bias)
        model.enc_log_sigma.copy_(0.5 * torch.log(torch.diagonal(post_cov)) + math.log(1.2))
    return model.eval()


def sample_linear_gaussian(model: LinearGaussian, n: int, seed: int) -> torch.Tensor:
    """``n`` draws x = W z + b + sigma eps from the model, clipped to [0, 1] (what the service accepts)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(n, model.config.latent, generator=g)
        noise = torch.exp(model.log_noise) * torch.randn(n, model.config.input_dim, generator=g)
        return (z @ model.weight.T + model.bias + noise).clamp(0, 1)


def tiny_bbb(seed: int = 0, input_dim: int = 784) -> BayesMLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BayesMLP(BBBConfig(input_dim=input_dim, hidden=[16])).eval()


def write_checkpoints(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(directory / "tinybbb.safetensors", tiny_bbb(), training=TRAINING, dataset=DATASET)
    save_checkpoint(directory / "tiny.safetensors", tiny_vae(), training=TRAINING, dataset=DATASET)
    save_checkpoint(directory / "lg.safetensors", linear_gaussian(), training=TRAINING, dataset=DATASET)
    (directory / "broken.safetensors").write_bytes(b"this is not a safetensors file")
    return directory


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def shipped(folder: Path, *names: str) -> Path:
    """``folder`` holding links to the named shipped checkpoints: a server of only these loads in a second or
    two, where all of them take about seven (each model's speed is measured at load)."""
    for name in names:
        (folder / f"{name}.safetensors").symlink_to(SHIPPED / f"{name}.safetensors")
    return folder


def digit_image(seed: int = 0) -> np.ndarray:
    """A 28x28 uint8 greyscale blob, roughly digit-like (a ring)."""
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot(yy - 14 + seed % 3, xx - 14)
    return np.where((r > 5) & (r < 9), 255, 0).astype(np.uint8)


def png_bytes(array: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode if mode != "L" else None).save(buf, format=fmt)
    return buf.getvalue()


def poor_encoder_model(input_dim: int = 60, latent: int = 3, seed: int = 0) -> LinearGaussian:
    """float64, encoder mean shrunk to 90% of the posterior's, its scale 1.5 times too wide."""
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussian(LinearGaussianConfig(input_dim=input_dim, latent=latent)).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(input_dim, latent, generator=g, dtype=torch.float64) * 0.3)
        model.bias.copy_(torch.rand(input_dim, generator=g, dtype=torch.float64))
        model.log_noise.fill_(math.log(0.1))
        post_map, post_cov = model.exact_posterior()
        model.enc_weight.copy_(0.9 * post_map)
        model.enc_bias.copy_(-0.9 * post_map @ model.bias)
        model.enc_log_sigma.copy_(0.5 * torch.log(torch.diagonal(post_cov)) + math.log(1.5))
    return model.eval()


def make_client(checkpoint_dir: Path, **overrides: object) -> TestClient:
    """A client of the app; its job store is a fresh SQLite file unless ``data_dir`` or ``database_url`` is given."""
    if "data_dir" not in overrides and "database_url" not in overrides:
        overrides["data_dir"] = Path(tempfile.mkdtemp(prefix="logpx-data-"))
    return TestClient(create_app(Settings(checkpoint_dir=checkpoint_dir, **overrides)), raise_server_exceptions=False)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "service never became ready"
        time.sleep(0.02)


IMAGE = (digit_image() / 255.0).reshape(-1).tolist()
IMAGE_28 = (digit_image(1) / 255.0).tolist()


def assert_problem(r, status: int, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in r.text and "/work" not in r.text and "/tmp" not in r.text
    if field is not None:
        assert body.get("field") == field, body
    return body


def binned_logistic(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(x) of 8-bit ``x`` under a logistic on [-1, 1] binned into 256 values, the end bins taking the tails,
    by plain differences of the logistic's CDF (torch.distributions: a sigmoid-transformed uniform)."""
    logistic = TransformedDistribution(
        Uniform(torch.zeros_like(mean), torch.ones_like(mean)), [SigmoidTransform().inv, AffineTransform(mean, scale)]
    )
    c = 2 * x - 1
    upper = logistic.cdf(torch.minimum(c + 1 / 255, torch.ones_like(c)).expand_as(mean))
    lower = logistic.cdf(torch.maximum(c - 1 / 255, -torch.ones_like(c)).expand_as(mean))
    k = torch.round(x * 255).expand_as(mean)
    return torch.where(k == 0, upper, torch.where(k == 255, 1 - lower, upper - lower))
