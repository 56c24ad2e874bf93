"""Burda et al. (2016) VAE / IWAE architectures for binarised 28x28 images, in this single file.

One stochastic layer:  q: 784-200-200-(mu, sigma)[latent];  p: latent-200-200-784.
Two stochastic layers: q: 784-200-200-h1(100), h1-100-100-h2(50);
                       p: h2-100-100-h1(100), h1-200-200-784.
Bernoulli likelihood on logits, tanh units, sigma = exp(linear), prior N(0, I). The 2-D-latent variant
is the one-layer architecture with ``latent=2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .latent import LatentVariableModel
from .layers import (
    HALF_LOG_2PI,
    GaussianHead,
    chunks_over_k,
    mlp,
    normal_log_prob,
    standard_normal_log_prob,
)

__all__ = ["VAEConfig", "VAE"]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture hyper-parameters, stored in the checkpoint and used to rebuild the model."""

    layers: int = 1  # stochastic layers: 1 or 2
    input_dim: int = 784  # flattened 28 x 28
    hidden: list[int] = field(default_factory=lambda: [200, 200])  # deterministic units around x
    latent: int = 50  # size of the top stochastic layer (h2 for two layers)
    hidden2: list[int] = field(default_factory=lambda: [100, 100])  # units between h1 and h2
    latent1: int = 100  # size of h1 (two layers only)

    def __post_init__(self) -> None:
        if self.layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {self.layers}")


class VAE(LatentVariableModel):
    """A VAE whose ``log_weights`` returns ``log p(x, z) - log q(z | x)`` for k draws per input."""

    family = "vae"
    likelihood = "bernoulli"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.layers == 1:
            self.encoder = GaussianHead(c.input_dim, c.hidden, c.latent)
            self.decoder = nn.Sequential(mlp([c.latent, *c.hidden[::-1]]), nn.Linear(c.hidden[0], c.input_dim))
            self.latent_sizes = [c.latent]
        else:
            self.encoder = GaussianHead(c.input_dim, c.hidden, c.latent1)
            self.encoder2 = GaussianHead(c.latent1, c.hidden2, c.latent)
            self.prior1 = GaussianHead(c.latent, c.hidden2[::-1], c.latent1)
            self.decoder = nn.Sequential(mlp([c.latent1, *c.hidden[::-1]]), nn.Linear(c.hidden[0], c.input_dim))
            self.latent_sizes = [c.latent1, c.latent]

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def init_output_bias(self, pixel_mean: torch.Tensor) -> None:
        """Set the decoder's output bias to the logit of the training-set pixel mean (Burda et al.)."""
        p = pixel_mean.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))

    def elements_per_sample(self) -> int:
        c = self.config
        return 2 * c.input_dim + sum(c.hidden) * 2 + sum(c.hidden2) * 2 + 4 * sum(self.latent_sizes)

    def log_weights_from_noise(
        self,
        x: torch.Tensor,
        noise: list[torch.Tensor],
        *,
        max_elements: int | None = None,
        before_chunk_fn: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        k, batch = noise[0].shape[:2]
        noise = [n.to(x.device, x.dtype) for n in noise]
        mu1, log_sigma1 = self.encoder(x)  # [B, d1]: the encoder runs once per input, not per sample
        out_layer = self.decoder[1]
        x_out = (x @ out_layer.weight, x @ out_layer.bias)  # [B, H], [B]
        out = torch.empty(k, batch, dtype=x.dtype, device=x.device)
        for rows in chunks_over_k(k, batch, self.elements_per_sample(), max_elements, x.device):
            if before_chunk_fn is not None:
                before_chunk_fn()
            out[rows] = self._chunk_log_weights(x, mu1, log_sigma1, [n[rows] for n in noise], x_out)
        return out

    def _chunk_log_weights(
        self, x: torch.Tensor, mu1: torch.Tensor, log_sigma1: torch.Tensor, noise: list[torch.Tensor],
        x_out: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        h1 = mu1 + torch.exp(log_sigma1) * noise[0]  # [c, B, d1]
        # log q(h1 | x) with (h1 - mu) / sigma = noise exactly: no recomputation, no rounding.
        log_q = (-0.5 * noise[0] * noise[0] - log_sigma1).sum(-1) - HALF_LOG_2PI * noise[0].shape[-1]  # [c, B]
        if self.config.layers == 1:
            log_prior = standard_normal_log_prob(h1)
        else:
            mu2, log_sigma2 = self.encoder2(h1)  # [c, B, d2]
            h2 = mu2 + torch.exp(log_sigma2) * noise[1]
            log_q = log_q + (-0.5 * noise[1] * noise[1] - log_sigma2).sum(-1) - HALF_LOG_2PI * noise[1].shape[-1]
            prior_mu, prior_log_sigma = self.prior1(h2)  # p(h1 | h2)
            log_prior = standard_normal_log_prob(h2) + normal_log_prob(h1, prior_mu, prior_log_sigma)
        hidden = self.decoder[0](h1)  # [c, B, H]
        logits = self.decoder[1](hidden)  # [c, B, 784]
        # Bernoulli log-likelihood on logits, sum_j x_j l_j - softplus(l_j), never the log of a clipped
        # sigmoid. The x . l term is linear in the last layer, so it is taken through it once per input
        # (x_out = (W^T x, b . x)) instead of elementwise over all k x 784 logits.
        x_w, x_b = x_out
        x_dot_logits = (hidden * x_w).sum(-1) + x_b  # [c, B]
        log_lik = x_dot_logits - F.softplus(logits).sum(-1)
        return log_lik + log_prior - log_q  # [c, B]

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x, z)`` of a one-layer model for latents ``z`` ``[N, latent]`` and ``x`` ``[B, 784]``;
        returns ``[N, B]``. Used to integrate a 2-D latent on a grid."""
        if self.config.layers != 1:
            raise ValueError("log_joint is defined for one stochastic layer")
        logits = self.decoder(z).unsqueeze(1)  # [N, 1, 784]
        log_lik = -F.binary_cross_entropy_with_logits(
            logits.expand(-1, x.shape[0], -1), x.expand(z.shape[0], -1, -1), reduction="none"
        ).sum(-1)
        return log_lik + standard_normal_log_prob(z).unsqueeze(1)
