"""The benchmark baseline computes what logpx computes: the per-example float64 reference loop and logpx's
batched log-weights agree on the same checkpoint and draws (the benchmark asserts it too, but only when run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.reference import float64_copy, reference_loop
from logpx.families import VAE
from logpx.io import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["vae1-iwae50", "vae2-iwae50"])
def test_reference_loop_equals_logpx(name: str) -> None:
    model = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors").model
    assert isinstance(model, VAE)
    x = (torch.rand(3, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    noise = model.sample_noise(20, 3, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = model.log_weights_from_noise(x, noise).double()
        reference = reference_loop(float64_copy(model), x, noise)
    assert reference.shape == (20, 3)
    torch.testing.assert_close(reference, ours, rtol=0, atol=1e-3)


def test_the_research_style_ais_baseline_estimates_the_evidence() -> None:
    """benchmarks/ais_peer.py's peer is a working AIS, not a strawman: on the poor-encoder linear-Gaussian model its
    chains' log-mean-exp is within 3 delta-method standard errors (plus 0.05 nats of AIS bias at this length) of
    the exact log p(x)."""
    import math

    from benchmarks.ais_peer import log_mean_exp, peer_ais
    from logpx.samplers import schedule, simulate
    from tests.helpers import poor_encoder_model

    model = poor_encoder_model(input_dim=10, latent=2)  # its prior start needs thousands of steps at 60 dimensions
    with torch.no_grad():
        x, _ = simulate(model, 3, torch.Generator().manual_seed(1))
        log_w, acceptance = peer_ais(model, x, 32, schedule(500, "sigmoid"), 5, seed=2)
        exact = model.exact_log_px(x)
    w = torch.exp(log_w - log_w.max(0).values)
    se = w.std(0) / (w.mean(0) * math.sqrt(32))
    assert ((log_mean_exp(log_w) - exact).abs() <= 3 * se + 0.05).all(), (log_mean_exp(log_w) - exact, se)
    assert 0.3 < acceptance < 1.0
