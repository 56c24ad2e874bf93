"""The two kinds of model logpx serves, as types: latent-variable models (evidence) and Bayesian
classifiers (predictive distributions). The service asks a model what it can do by these types, never
by its family's name.

A latent-variable family provides everything the samplers need: its input shape, the sizes of its
stochastic layers, reparameterisation noise, ``log_weights`` from that noise (importance sampling),
and for annealed importance sampling the densities ``log_q(z | x)``, ``log p(z)``, ``log p(x | z)`` and
their sum ``log_joint`` as differentiable functions of a latent ``z`` of shape ``[..., B, latent_dim]``
(the stochastic layers concatenated, bottom layer first).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..runtime import CheckFn
from .layers import HALF_LOG_2PI, chunks_over_k, normal_log_prob, standard_normal_log_prob
from .likelihoods import EIGHT_BIT

__all__ = [
    "Classifier",
    "Family",
    "GaussianLatentModel",
    "LatentVariableModel",
    "Likelihood",
    "default_input_shape",
    "model_device",
]

Likelihood = Literal[
    "bernoulli", "gaussian", "categorical", "discretized_logistic", "discretized_logistic_mixture", "categorical_256"
]
# Likelihoods that are a probability mass over the data's values, so that log p(x) <= 0.
DISCRETE_LIKELIHOODS = ("bernoulli", *EIGHT_BIT)


def default_input_shape(input_dim: int) -> tuple[int, ...]:
    """A square greyscale image when ``input_dim`` is a square (784 -> 28 x 28), else a vector."""
    side = math.isqrt(input_dim)
    return (side, side) if side * side == input_dim and side > 1 else (input_dim,)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


class Family(nn.Module, ABC):
    """What every servable model states about itself, for checkpoints and for the service."""

    family: ClassVar[str]
    likelihood: Likelihood  # a class attribute for fixed families; the general MLP VAE sets it per instance

    def __init__(self, input_dim: int, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.input_shape = default_input_shape(input_dim) if input_shape is None else tuple(input_shape)
        if math.prod(self.input_shape) != input_dim or any(s < 1 for s in self.input_shape):
            raise ValueError(f"input_shape {list(self.input_shape)} does not hold input_dim = {input_dim} values")

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @abstractmethod
    def arch(self) -> dict[str, Any]:
        """The architecture hyper-parameters that rebuild this model (stored in the checkpoint)."""

    @abstractmethod
    def warm_up(self, generator: torch.Generator) -> None:
        """One tiny pass on the model's device, so that the first request pays no lazy set-up;
        ``ValueError`` if it is not finite."""


class LatentVariableModel(Family):
    """p(x, z) = p(z) p(x | z) with an encoder q(z | x); subclasses set ``latent_sizes``."""

    latent_sizes: list[int]

    @property
    def latent_dim(self) -> int:
        return sum(self.latent_sizes)

    def elements_per_sample(self) -> int:
        """Activation elements one latent sample of one input costs in a forward pass (for chunking)."""
        return 2 * self.input_dim + 4 * self.latent_dim

    def log_jacobian(self) -> float:
        """Nats that normalisation constants' change of variables adds to log p(x) (0: none)."""
        return 0.0

    @property
    def discrete(self) -> bool:
        """Whether p(x | z) is a probability mass (so that log p(x) <= 0), not a density."""
        return self.likelihood in DISCRETE_LIKELIHOODS

    def sample_noise(self, k: int, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Reparameterisation noise ``[k, B, latent_dim]`` on the generator's device. Drawn up front
        (small beside the decoder's activations), so that the same generator state gives the same
        log-weights whatever the chunking, and requests batched together each keep their own draws."""
        return torch.randn(k, batch, self.latent_dim, generator=generator, device=generator.device)

    @abstractmethod
    def log_weights_from_noise(
        self, x: torch.Tensor, noise: torch.Tensor, *, max_elements: int | None = None, check_fn: CheckFn | None = None
    ) -> torch.Tensor:
        """``[k, B]`` log-weights ``log p(x, z) - log q(z | x)`` of ``x`` ``[B, input_dim]`` for the
        ``sample_noise`` output, chunked over k so that activations stay within ``max_elements``
        (default: ``layers.chunk_elements`` of the device); ``check_fn`` is called before each chunk and
        may raise to stop the work (deadlines, cancellation)."""

    def log_weights(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator,
        *,
        max_elements: int | None = None,
        check_fn: CheckFn | None = None,
    ) -> torch.Tensor:
        """Draw k latents per input (``x`` ``[B, input_dim]`` on the model's device) and return their
        ``[k, B]`` log-weights in the model's dtype."""
        noise = self.sample_noise(k, x.shape[0], generator)
        return self.log_weights_from_noise(x, noise, max_elements=max_elements, check_fn=check_fn)

    @abstractmethod
    def sample_q(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Latents ``z`` ``[k, B, latent_dim]`` drawn from q(z | x) by reparameterising ``noise``."""

    @abstractmethod
    def log_q(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log q(z | x)``: ``x`` ``[B, input_dim]``, ``z`` ``[..., B, latent_dim]`` -> ``[..., B]``."""

    def q_for(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``z -> log q(z | x)`` for a fixed ``x``: what depends on x alone (the encoder's pass) computed once,
        for samplers that evaluate q at many z (AIS from the encoder)."""
        return lambda z: self.log_q(x, z)

    @abstractmethod
    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)``: ``[..., B, latent_dim]`` -> ``[..., B]``."""

    @abstractmethod
    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)``: ``x`` ``[B, input_dim]``, ``z`` ``[..., B, latent_dim]`` -> ``[..., B]``."""

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Latents ``[*shape, latent_dim]`` drawn from p(z), in the model's dtype; ancestral for hierarchical priors."""
        dtype = next(self.parameters()).dtype
        return torch.randn(*shape, self.latent_dim, generator=generator, device=generator.device, dtype=dtype)

    @abstractmethod
    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Data ``[B, input_dim]`` drawn from p(x | z) for latents ``z`` ``[B, latent_dim]``."""

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x, z)``, differentiable in ``z``: ``[..., B, latent_dim]`` -> ``[..., B]``."""
        return self.log_prior(z) + self.log_likelihood(x, z)

    def warm_up(self, generator: torch.Generator) -> None:
        x = torch.zeros(1, self.input_dim, device=model_device(self))
        if not torch.isfinite(self.log_weights(x, 2, generator)).all():
            raise ValueError("warm-up produced non-finite log-weights")


class GaussianLatentModel(LatentVariableModel):
    """One stochastic layer with q(z | x) = N(mu(x), diag sigma(x)^2) and p(z) = N(0, I): subclasses give
    ``encode`` and ``log_likelihood``; log q, its sampler, the prior and the chunked log-weights are here."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of q(z | x), each ``[B, latent]``."""

    def log_q(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(z, *self.encode(x))

    def q_for(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        mu, log_sigma = self.encode(x)
        return lambda z: normal_log_prob(z, mu, log_sigma)

    def sample_q(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self.encode(x)
        return mu + torch.exp(log_sigma) * noise

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def log_weights_from_noise(
        self, x: torch.Tensor, noise: torch.Tensor, *, max_elements: int | None = None, check_fn: CheckFn | None = None
    ) -> torch.Tensor:
        k, batch = noise.shape[:2]
        noise = noise.to(x.device, x.dtype)
        mu, log_sigma = self.encode(x)  # once per input, not per sample
        out = torch.empty(k, batch, dtype=x.dtype, device=x.device)
        for rows in chunks_over_k(k, batch, self.elements_per_sample(), max_elements, x.device):
            if check_fn is not None:
                check_fn()
            eps = noise[rows]  # [c, B, d]
            z = mu + torch.exp(log_sigma) * eps
            # log q(z | x) with (z - mu) / sigma = eps exactly: no recomputation, no rounding.
            log_q = (-0.5 * eps * eps - log_sigma).sum(-1) - HALF_LOG_2PI * eps.shape[-1]
            out[rows] = self.log_joint(x, z) - log_q
        return out


class Classifier(Family):
    """A Bayesian classifier: k posterior weight draws give per-draw class log-probabilities."""

    @property
    @abstractmethod
    def classes(self) -> int:
        """Number of classes."""

    @abstractmethod
    def sample_forward(
        self, x: torch.Tensor, k: int, generator: torch.Generator, check_fn: CheckFn | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class log-probabilities ``[k, B, C]`` under k weight draws, and ``log q(w) - log P(w)`` ``[k]``."""

    @staticmethod
    def label_log_likelihoods(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-draw ``log p(y | x, w_i)`` ``[k, B]`` for ``labels`` ``[B]``: the terms whose log-mean-exp is
        the posterior predictive log-likelihood, so every estimator applies to them."""
        return log_probs.gather(2, labels.view(1, -1, 1).expand(log_probs.shape[0], -1, 1)).squeeze(2)

    def warm_up(self, generator: torch.Generator) -> None:
        x = torch.zeros(1, self.input_dim, device=model_device(self))
        log_probs, _ = self.sample_forward(x, 2, generator)
        if not torch.isfinite(log_probs).all():
            raise ValueError("warm-up produced non-finite class probabilities")
