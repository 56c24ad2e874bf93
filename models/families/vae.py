"""Burda et al. (2016) VAE / IWAE architectures for binarised images, in this single file.

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

from ..runtime import CheckFn
from .base import LatentVariableModel
from .layers import (
    HALF_LOG_2PI,
    GaussianHead,
    chunks_over_k,
    mlp,
    normal_log_prob,
    standard_normal_log_prob,
)

__all__ = ["VAE", "VAEConfig"]


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
    """A VAE whose ``log_weights`` returns ``log p(x, z) - log q(z | x)`` for k draws per input.

    Its latent ``z`` is ``h1`` for one stochastic layer and ``[h1, h2]`` concatenated for two."""

    family = "vae"
    likelihood = "bernoulli"

    def __init__(self, config: VAEConfig, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config.input_dim, input_shape)
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

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def init_output_bias(self, pixel_mean: torch.Tensor) -> None:
        """Set the decoder's output bias to the logit of the training-set pixel mean (Burda et al.)."""
        p = pixel_mean.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self._output_layer.bias.copy_(torch.log(p) - torch.log1p(-p))

    @property
    def _output_layer(self) -> nn.Linear:
        layer = self.decoder[1]
        assert isinstance(layer, nn.Linear)
        return layer

    def elements_per_sample(self) -> int:
        c = self.config
        return 2 * c.input_dim + sum(c.hidden) * 2 + sum(c.hidden2) * 2 + 4 * self.latent_dim

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h1, h2)`` from a latent ``[..., latent_dim]``; ``h2`` is ``None`` for one layer."""
        if self.config.layers == 1:
            return z, None
        h1, h2 = z.split(self.latent_sizes, dim=-1)
        return h1, h2

    def _log_prior(self, h1: torch.Tensor, h2: torch.Tensor | None) -> torch.Tensor:
        if h2 is None:
            return standard_normal_log_prob(h1)
        prior_mu, prior_log_sigma = self.prior1(h2)  # p(h1 | h2)
        return standard_normal_log_prob(h2) + normal_log_prob(h1, prior_mu, prior_log_sigma)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return self._log_prior(*self._split(z))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # Bernoulli on logits: sum_j x_j l_j - softplus(l_j), never the log of a clipped sigmoid.
        logits = self.decoder(self._split(z)[0])  # [..., B, D]
        return (x * logits - F.softplus(logits)).sum(-1)

    def log_q(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h1, h2 = self._split(z)
        mu1, log_sigma1 = self.encoder(x)  # [B, d1]
        out = normal_log_prob(h1, mu1, log_sigma1)
        if h2 is not None:
            mu2, log_sigma2 = self.encoder2(h1)
            out = out + normal_log_prob(h2, mu2, log_sigma2)
        return out

    def q_for(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        mu1, log_sigma1 = self.encoder(x)  # once; q(h2 | h1) depends on z and is evaluated each time

        def log_q(z: torch.Tensor) -> torch.Tensor:
            h1, h2 = self._split(z)
            out = normal_log_prob(h1, mu1, log_sigma1)
            if h2 is not None:
                out = out + normal_log_prob(h2, *self.encoder2(h1))
            return out

        return log_q

    def sample_q(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        e1, e2 = self._split(noise)
        mu1, log_sigma1 = self.encoder(x)
        h1 = mu1 + torch.exp(log_sigma1) * e1
        if e2 is None:
            return h1
        mu2, log_sigma2 = self.encoder2(h1)
        return torch.cat([h1, mu2 + torch.exp(log_sigma2) * e2], dim=-1)

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        eps = super().sample_prior(shape, generator)
        e1, h2 = self._split(eps)
        if h2 is None:
            return e1
        prior_mu, prior_log_sigma = self.prior1(h2)  # ancestral: h2 ~ N(0, I), then h1 | h2
        return torch.cat([prior_mu + torch.exp(prior_log_sigma) * e1, h2], dim=-1)

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.sigmoid(self.decoder(self._split(z)[0]))
        return (torch.rand(probs.shape, generator=generator, device=generator.device) < probs).to(probs.dtype)

    def log_weights_from_noise(
        self, x: torch.Tensor, noise: torch.Tensor, *, max_elements: int | None = None, check_fn: CheckFn | None = None
    ) -> torch.Tensor:
        k, batch = noise.shape[:2]
        noise = noise.to(x.device, x.dtype)
        mu1, log_sigma1 = self.encoder(x)  # [B, d1]: the encoder runs once per input, not per sample
        out_layer = self._output_layer
        x_out = (x @ out_layer.weight, x @ out_layer.bias)  # [B, H], [B]
        out = torch.empty(k, batch, dtype=x.dtype, device=x.device)
        for rows in chunks_over_k(k, batch, self.elements_per_sample(), max_elements, x.device):
            if check_fn is not None:
                check_fn()
            out[rows] = self._chunk_log_weights(mu1, log_sigma1, noise[rows], x_out)
        return out

    def _chunk_log_weights(
        self, mu1: torch.Tensor, log_sigma1: torch.Tensor, noise: torch.Tensor, x_out: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        e1, e2 = self._split(noise)
        h1 = mu1 + torch.exp(log_sigma1) * e1  # [c, B, d1]
        # log q(h1 | x) with (h1 - mu) / sigma = noise exactly: no recomputation, no rounding.
        log_q = (-0.5 * e1 * e1 - log_sigma1).sum(-1) - HALF_LOG_2PI * e1.shape[-1]  # [c, B]
        h2 = None
        if e2 is not None:
            mu2, log_sigma2 = self.encoder2(h1)  # [c, B, d2]
            h2 = mu2 + torch.exp(log_sigma2) * e2
            log_q = log_q + (-0.5 * e2 * e2 - log_sigma2).sum(-1) - HALF_LOG_2PI * e2.shape[-1]
        hidden = self.decoder[0](h1)  # [c, B, H]
        logits = self.decoder[1](hidden)  # [c, B, D]
        # log_likelihood's x . l term is linear in the last layer, so it is taken through it once per
        # input (x_out = (W^T x, b . x)) instead of elementwise over all k x D logits.
        x_w, x_b = x_out
        x_dot_logits = (hidden * x_w).sum(-1) + x_b  # [c, B]
        log_lik = x_dot_logits - F.softplus(logits).sum(-1)
        return log_lik + self._log_prior(h1, h2) - log_q  # [c, B]
