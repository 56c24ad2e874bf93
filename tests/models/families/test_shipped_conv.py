"""The shipped 8-bit convolutional model (`conv-mnist8`, a discretised logistic mixture) against an independent
reading of its weights: the network written out with torch.nn from its description, the mixture by plain
differences of torch.distributions' logistic CDF; its log-weights on the same noise are the same numbers
(float64), and the service scores its 8-bit digits in bits per dimension, -log2 P(x) / 784."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import distributions as D
from torch import nn

from logpx.io.checkpoint import load_checkpoint
from logpx.io.data import read_idx
from tests.helpers import binned_logistic, make_client, wait_ready

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "checkpoints" / "conv-mnist8.safetensors"
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="conv-mnist8 is not shipped")


def _networks(state: dict[str, torch.Tensor]) -> nn.ModuleDict:
    """checkpoints/arch/conv-mnist8.json written out by hand."""
    encoder = nn.Sequential(
        nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(1568, 128), nn.ReLU(),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 1568), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
        nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(16, 15, 4, 2, 1),
    )  # fmt: skip
    nets = nn.ModuleDict(
        {"encoder": encoder, "mu": nn.Linear(128, 16), "scale": nn.Linear(128, 16), "decoder": decoder}
    )
    nets.load_state_dict(state)
    return nets.double().eval()


def _independent_log_weights(nets: nn.ModuleDict, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z) - log q(z | x) at z = mu + sigma eps, ``eps`` ``[K, B, 16]``, from the hand-written networks."""
    k, b = eps.shape[:2]
    h = nets["encoder"](x.reshape(b, 1, 28, 28))
    mu, sigma = nets["mu"](h), torch.exp(0.5 * nets["scale"](h))
    z = mu + sigma * eps
    out = nets["decoder"](z.reshape(-1, 16)).reshape(k, b, 15, 784)
    weights = torch.softmax(out[:, :, :5], dim=2)
    p = binned_logistic(x[None, :, None, :], out[:, :, 5:10], out[:, :, 10:].clamp(min=-7).exp())
    return (
        torch.log((weights * p).sum(2)).sum(-1)
        + D.Normal(0.0, 1.0).log_prob(z).sum(-1)
        - D.Normal(mu, sigma).log_prob(z).sum(-1)
    )


def test_the_shipped_8_bit_model_agrees_with_an_independent_computation(tmp_path: Path) -> None:
    arch = json.loads((ROOT / "checkpoints" / "arch" / "conv-mnist8.json").read_text())["arch"]
    assert arch["likelihood"] == "discretized_logistic_mixture" and arch["mixtures"] == 5
    pixels = read_idx(ROOT / "tests" / "data" / "mnist-valid200" / "valid200-images-idx3-ubyte.gz")[:2]
    x = torch.from_numpy(pixels.reshape(2, 784).astype("float64") / 255)
    eps = torch.randn(64, 2, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    model = load_checkpoint(SHIPPED).model.double()
    with torch.no_grad():
        got = model.log_weights_from_noise(x, eps)
        want = _independent_log_weights(_networks(load_file(SHIPPED)), x, eps)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0.0)  # the same numbers, on the same noise

    shutil.copy(SHIPPED, tmp_path / SHIPPED.name)
    with make_client(tmp_path) as client:
        wait_ready(client)
        body = {"inputs": pixels.reshape(2, -1).tolist(), "scale": "byte", "estimator": {"name": "iwae", "k": 200}}
        served = client.post("/v1/models/conv-mnist8/evidence", json=body).json()["results"]
        detail = client.get("/v1/models/conv-mnist8").json()
    assert detail["domain"] == "uint8" and detail["bits_per_dim"] == "-log2 p(x) / 784"
    for r in served:  # bits per dimension of 8-bit data: -log2 P(x) / D, nothing added
        assert r["log_px"] < 0 and r["bits_per_dim"] == pytest.approx(-r["log_px"] / (784 * math.log(2)), rel=1e-9)
