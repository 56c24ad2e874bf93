"""Bayes by Backprop: densities against torch.distributions, KL weights, the entropy split."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from logpx.families.bbb import BayesMLP, BBBConfig, kl_weights, predictive_summary


def test_prior_is_the_scale_mixture() -> None:
    model = BayesMLP(BBBConfig(hidden=[8], prior_pi=0.25, prior_log_s1=-1.0, prior_log_s2=-7.0))
    w = torch.randn(3, 5, 4, dtype=torch.float64) * 0.3
    w[0, 0, 0] = 40.0  # far in the tail: the narrow component underflows, logaddexp must not
    mixture = MixtureSameFamily(
        Categorical(torch.tensor([0.25, 0.75], dtype=torch.float64)),
        Normal(
            torch.zeros(2, dtype=torch.float64), torch.tensor([math.exp(-1.0), math.exp(-7.0)], dtype=torch.float64)
        ),
    )
    want = mixture.log_prob(w.unsqueeze(-1).squeeze(-1)).flatten(1).sum(1)
    assert torch.allclose(model.log_prior(w), want, rtol=1e-12)


def test_posterior_log_density_is_the_diagonal_gaussian() -> None:
    torch.manual_seed(0)
    model = BayesMLP(BBBConfig(hidden=[8], init_rho=-2.0)).double()
    layer = model.layers[0]
    with torch.no_grad():
        layer.weight_rho.uniform_(-3, 0)
    w, b, log_q = layer.sample(4, torch.Generator().manual_seed(1))
    sw, sb = torch.nn.functional.softplus(layer.weight_rho), torch.nn.functional.softplus(layer.bias_rho)
    want = Normal(layer.weight_mu, sw).log_prob(w).sum((1, 2)) + Normal(layer.bias_mu, sb).log_prob(b).sum(1)
    assert torch.allclose(log_q, want, rtol=1e-10)


@pytest.mark.parametrize("m", [1, 2, 10, 600])
@pytest.mark.parametrize("scheme", ["blundell", "uniform"])
def test_kl_weights_sum_to_one(m: int, scheme: str) -> None:
    w = kl_weights(m, scheme)
    assert w.shape == (m,) and math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
    assert (w >= 0).all()
    if scheme == "blundell" and m > 1:
        assert torch.allclose(
            w[:-1] / w[1:], torch.full((m - 1,), 2.0, dtype=torch.float64)
        )  # 2^(M-i) halves each step


def test_entropy_split() -> None:
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(50, 4, 10, generator=g) * 3, -1)
    s = predictive_summary(log_probs)
    assert torch.allclose(s.probs.sum(-1), torch.ones(4, dtype=torch.float64))
    assert (s.epistemic >= 0).all() and (s.aleatoric >= 0).all()
    assert torch.allclose(s.entropy, s.aleatoric + s.epistemic)
    same = predictive_summary(log_probs[:1].expand(50, -1, -1))  # every draw identical: no epistemic part
    assert torch.allclose(same.epistemic, torch.zeros(4, dtype=torch.float64), atol=1e-12)


def test_weight_draws_do_not_depend_on_the_batch() -> None:
    model = BayesMLP(BBBConfig(hidden=[8]))
    x = torch.rand(5, 784)
    a, _ = model.sample_forward(x, 40, torch.Generator().manual_seed(3))
    b, _ = model.sample_forward(x[:2], 40, torch.Generator().manual_seed(3))
    assert torch.allclose(a[:, :2], b, atol=1e-6)
