"""The general MLP VAE against an independent plain-torch computation on the same weights and noise,
for every activation, scale parameterisation and likelihood."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

from logpx.families import MLPVAE, MLPVAEConfig
from logpx.io import load_checkpoint, save_checkpoint
from tests.helpers import DATASET, TRAINING

ACTS = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "silu": F.silu,
}


def _model(**arch: object) -> MLPVAE:
    torch.manual_seed(0)
    model = MLPVAE(MLPVAEConfig(input_dim=12, latent=3, encoder=[7, 5], decoder=[6], **arch)).double()  # type: ignore[arg-type]
    if model.config.likelihood == "gaussian" and model.config.gaussian_scale == "learned":
        with torch.no_grad():
            model.log_sigma_x.copy_(torch.linspace(-1, 0.5, 12, dtype=torch.float64))
    return model.eval()


def _independent(model: MLPVAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x, z) - log q(z | x) written out from the state dict alone, with torch.distributions."""
    c, w, act = model.config, model.state_dict(), ACTS[model.config.activation]
    h = x
    for i in range(len(c.encoder)):
        h = act(F.linear(h, w[f"encoder.{2 * i}.weight"], w[f"encoder.{2 * i}.bias"]))
    mu, raw = F.linear(h, w["mu.weight"], w["mu.bias"]), F.linear(h, w["scale.weight"], w["scale.bias"])
    sigma = {"log_sigma": raw.exp(), "log_var": (0.5 * raw).exp(), "softplus": F.softplus(raw)}[c.scale]
    z = mu + sigma * eps
    g = z
    for i in range(len(c.decoder)):
        g = act(F.linear(g, w[f"decoder.{2 * i}.weight"], w[f"decoder.{2 * i}.bias"]))
    out = F.linear(g, w["out.weight"], w["out.bias"])
    if c.likelihood == "bernoulli":
        log_lik = Bernoulli(logits=out).log_prob(x.expand_as(out)).sum(-1)
    else:
        scale = w["log_sigma_x"].exp() if c.gaussian_scale == "learned" else math.exp(c.log_sigma_x)
        log_lik = Normal(out, scale).log_prob(x.expand_as(out)).sum(-1)
    return log_lik + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, sigma).log_prob(z).sum(-1)


@pytest.mark.parametrize(
    "arch",
    [{"activation": a} for a in ACTS]
    + [{"scale": s} for s in ("log_sigma", "log_var", "softplus")]
    + [{"likelihood": "gaussian", "log_sigma_x": -0.7}, {"likelihood": "gaussian", "gaussian_scale": "learned"}],
    ids=lambda a: "-".join(str(v) for v in a.values()),
)
def test_log_weights_equal_an_independent_computation(arch: dict[str, object]) -> None:
    model = _model(**arch)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 12, generator=g, dtype=torch.float64)
    if model.likelihood == "bernoulli":
        x = (x > 0.5).double()
    noise = model.sample_noise(9, 4, torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        got = model.log_weights_from_noise(x, noise, max_elements=12 * 4 * 3)  # chunked too
        z = model.sample_q(x, noise)
        via_densities = model.log_joint(x, z) - model.log_q(x, z)
    want = _independent(model, x, noise)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-9)
    assert torch.allclose(via_densities, want, rtol=1e-10, atol=1e-9)


def test_a_gaussian_checkpoint_round_trips_and_may_exceed_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model(likelihood="gaussian", gaussian_scale="learned").float()
    save_checkpoint(tmp_path / "g.safetensors", model, training=TRAINING, dataset=DATASET)
    loaded = load_checkpoint(tmp_path / "g.safetensors")
    assert loaded.model.likelihood == "gaussian" and not loaded.model.discrete and loaded.binarize == "none"
    x = torch.rand(2, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = model.log_weights(x, 5, torch.Generator().manual_seed(4))
        b = loaded.model.log_weights(x, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
