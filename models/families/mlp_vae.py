"""A general MLP VAE described entirely by its checkpoint's metadata: bring your own model.

Encoder ``input_dim -> encoder[0] -> ... -> (mu, scale)[latent]``, decoder ``latent -> decoder[0] -> ...
-> input_dim``, each hidden layer ``Linear`` then the activation; q(z | x) a diagonal Gaussian whose scale
head gives log sigma, log variance or softplus(sigma); prior N(0, I); likelihood Bernoulli on logits, or
Gaussian (a density: log p(x) > 0 is possible) with a fixed or learned per-pixel log sigma. Tensor
names: ``encoder.{2i}`` / ``decoder.{2i}`` (the Linear layers), ``mu``, ``scale``, ``out``, and
``log_sigma_x`` for a learned Gaussian variance (docs/checkpoints.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import GaussianLatentModel, Likelihood
from .layers import HALF_LOG_2PI, mlp

__all__ = [
    "ACTIVATIONS",
    "LIKELIHOODS",
    "MLPVAE",
    "MLPVAEConfig",
    "Observation",
    "Scale",
    "discretized_logistic_log_prob",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}
Scale = Literal["log_sigma", "log_var", "softplus"]
LIKELIHOODS = ("bernoulli", "gaussian", "discretized_logistic")


@dataclass(frozen=True)
class MLPVAEConfig:
    input_dim: int = 784
    latent: int = 20
    encoder: list[int] = field(default_factory=lambda: [400])  # hidden widths, input side first
    decoder: list[int] = field(default_factory=lambda: [400])  # hidden widths, latent side first
    activation: str = "relu"
    scale: Scale = "log_var"  # what the encoder's scale head outputs
    likelihood: Literal["bernoulli", "gaussian", "discretized_logistic"] = "bernoulli"
    gaussian_scale: Literal["fixed", "learned"] = "fixed"  # gaussian and logistic: one log scale, or one per pixel
    log_sigma_x: float = 0.0  # fixed: log sigma of the Gaussian, log scale of the logistic

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.scale not in ("log_sigma", "log_var", "softplus"):
            raise ValueError(f"scale {self.scale!r} is not log_sigma, log_var or softplus")
        if self.likelihood not in LIKELIHOODS or self.gaussian_scale not in ("fixed", "learned"):
            raise ValueError(f"likelihood {self.likelihood!r} / gaussian_scale {self.gaussian_scale!r} not supported")
        if min(self.input_dim, self.latent, *self.encoder, *self.decoder) < 1:
            raise ValueError("every size must be at least 1")


def _log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, without cancellation in either tail: sigmoid(a) - sigmoid(b) =
    sigmoid(-b) - sigmoid(-a), whichever pair lies further from 1."""
    flip = (a + b) > 0
    hi, lo = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = F.logsigmoid(hi), F.logsigmoid(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float) -> torch.Tensor:
    """log P(x) per value of 8-bit data (x in [0, 1] on the grid k / 255) under a logistic of ``mean`` and
    ``log_scale`` on [-1, 1] binned into 256 intervals of width 2/255, the end bins taking the tails (PixelCNN++,
    Salimans et al. 2017): always a probability, so log P <= 0."""
    centred = 2 * x - 1  # k / 255 -> [-1, 1]
    inv = math.exp(-log_scale) if isinstance(log_scale, float) else torch.exp(-log_scale)
    upper, lower = (centred + 1 / 255 - mean) * inv, (centred - 1 / 255 - mean) * inv
    interior = _log_sigmoid_difference(upper, lower)
    left, right = F.logsigmoid(upper), F.logsigmoid(-lower)  # k = 0: P(X < edge); k = 255: P(X > edge)
    return torch.where(x <= 0.5 / 255, left, torch.where(x >= 254.5 / 255, right, interior))


class Observation:
    """What ``mlp_vae`` and ``layered_vae`` share past their networks: the encoder's scale head read as log
    sigma, and p(x | z) from the decoder's output (``decode``: ``[..., input_dim]``), Bernoulli on logits or
    Gaussian with a fixed or learned per-pixel log sigma."""

    config: MLPVAEConfig | Any
    likelihood: Likelihood
    log_sigma_x: torch.Tensor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_sigma(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.scale == "log_sigma":
            return raw
        if self.config.scale == "log_var":
            return 0.5 * raw
        return torch.log(F.softplus(raw))

    def _x_log_sigma(self) -> torch.Tensor | float:
        return self.log_sigma_x if self.config.gaussian_scale == "learned" else float(self.config.log_sigma_x)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.decode(z)  # [..., B, D]: logits, or the Gaussian's or the logistic's mean
        if self.likelihood == "bernoulli":
            return (x * out - F.softplus(out)).sum(-1)
        if self.likelihood == "discretized_logistic":
            return discretized_logistic_log_prob(x, out, self._x_log_sigma()).sum(-1)
        log_sigma = self._x_log_sigma()
        u = (x - out) * math.exp(-log_sigma) if isinstance(log_sigma, float) else (x - out) * torch.exp(-log_sigma)
        return (-0.5 * u * u - log_sigma - HALF_LOG_2PI).sum(-1)

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = self.decode(z)
        if self.likelihood == "discretized_logistic":  # the logistic's draw, on the 8-bit grid of [0, 1]
            u = torch.rand(out.shape, generator=generator, device=generator.device, dtype=out.dtype).clamp(
                1e-6, 1 - 1e-6
            )
            log_scale = self._x_log_sigma()
            scale = math.exp(log_scale) if isinstance(log_scale, float) else torch.exp(log_scale)
            centred = (out + scale * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
            return torch.round((centred + 1) * 127.5) / 255
        if self.likelihood == "bernoulli":
            u = torch.rand(out.shape, generator=generator, device=generator.device, dtype=out.dtype)
            return (u < torch.sigmoid(out)).to(out.dtype)
        noise = torch.randn(out.shape, generator=generator, device=generator.device, dtype=out.dtype)
        log_sigma = self._x_log_sigma()
        return out + (math.exp(log_sigma) if isinstance(log_sigma, float) else torch.exp(log_sigma)) * noise


class MLPVAE(Observation, GaussianLatentModel):
    family = "mlp_vae"

    def __init__(self, config: MLPVAEConfig, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config.input_dim, input_shape)
        self.config = c = config
        self.likelihood = c.likelihood
        self.latent_sizes = [c.latent]
        self.encoder = mlp([c.input_dim, *c.encoder], ACTIVATIONS[c.activation])
        self.mu = nn.Linear(c.encoder[-1] if c.encoder else c.input_dim, c.latent)
        self.scale = nn.Linear(c.encoder[-1] if c.encoder else c.input_dim, c.latent)
        self.decoder = mlp([c.latent, *c.decoder], ACTIVATIONS[c.activation])
        self.out = nn.Linear(c.decoder[-1] if c.decoder else c.latent, c.input_dim)
        if c.likelihood != "bernoulli" and c.gaussian_scale == "learned":
            self.log_sigma_x = nn.Parameter(torch.zeros(c.input_dim))

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def elements_per_sample(self) -> int:
        return 3 * self.config.input_dim + 2 * sum(self.config.decoder) + 4 * self.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.log_sigma(self.scale(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(z))
