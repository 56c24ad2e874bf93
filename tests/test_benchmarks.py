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
