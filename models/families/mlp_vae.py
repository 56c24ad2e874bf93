"""A general MLP VAE described entirely by its checkpoint's metadata: bring your own model.

Encoder ``input_dim -> encoder[0] -> ... -> (mu, scale)[latent]``, decoder ``latent -> decoder[0] -> ...
-> input_dim``, each hidden layer ``Linear`` then the activation; q(z | x) a diagonal Gaussian whose scale
head gives log sigma, log variance or softplus(sigma); prior N(0, I); p(x | z) one of ``likelihoods``
(Bernoulli, Gaussian, discretised logistic and its mixture, 256-way categorical). Tensor names:
``encoder.{2i}`` / ``decoder.{2i}`` (the Linear layers), ``mu``, ``scale``, ``out``, and ``log_sigma_x`` for a
learned global or per-value scale (docs/checkpoints.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import GaussianLatentModel, Likelihood
from .layers import mlp
from .likelihoods import (
    ObservationName,
    ScaleName,
    check_observation,
    learned_scale_shape,
    observation_log_prob,
    params_per_value,
    sample_observation,
)

__all__ = [
    "ACTIVATIONS",
    "MLPVAE",
    "MLPVAEConfig",
    "Observation",
    "Scale",
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


@dataclass(frozen=True)
class MLPVAEConfig:
    input_dim: int = 784
    latent: int = 20
    encoder: list[int] = field(default_factory=lambda: [400])  # hidden widths, input side first
    decoder: list[int] = field(default_factory=lambda: [400])  # hidden widths, latent side first
    activation: str = "relu"
    scale: Scale = "log_var"  # what the encoder's scale head outputs
    likelihood: ObservationName = "bernoulli"
    gaussian_scale: ScaleName = "fixed"  # gaussian and logistic: fixed, global, learned per value, or predicted
    log_sigma_x: float = 0.0  # fixed: log sigma of the Gaussian, log scale of the logistic
    mixtures: int = 5  # discretized_logistic_mixture's components
    normalization: dict[str, Any] | None = None  # {"mean": m, "std": s} the model was trained with (Observation)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.scale not in ("log_sigma", "log_var", "softplus"):
            raise ValueError(f"scale {self.scale!r} is not log_sigma, log_var or softplus")
        check_observation(self.likelihood, self.gaussian_scale, self.mixtures)
        if min(self.input_dim, self.latent, *self.encoder, *self.decoder) < 1:
            raise ValueError("every size must be at least 1")


class Observation:
    """What ``mlp_vae`` and ``layered_vae`` share past their networks: the encoder's scale head read as log
    sigma, and p(x | z) from the decoder's output (``decode``: ``[..., P * input_dim]``, read by
    ``likelihoods``)."""

    config: MLPVAEConfig | Any
    likelihood: Likelihood
    log_sigma_x: torch.Tensor
    norm_mean: torch.Tensor | None
    norm_std: torch.Tensor | None
    register_buffer: Any  # nn.Module's
    _learns_scale: bool  # whether log_sigma_x is a parameter (else the description's fixed number)
    _density_normalized: bool  # a Gaussian decoder models (x - m) / s, not x
    _log_jacobian: float  # its change of variables, -sum log s (0 when not)

    def init_learned_scale(self, dims: int) -> None:
        """The parameter ``log_sigma_x`` where the likelihood learns its scale (``learned_scale_shape``); any
        other reads the description's fixed ``log_sigma_x``, whatever ``gaussian_scale`` says."""
        shape = learned_scale_shape(self.config.likelihood, self.config.gaussian_scale, dims)
        self._learns_scale = shape is not None
        if shape is not None:
            self.log_sigma_x = nn.Parameter(torch.zeros(shape))

    def init_normalization(self, shape: tuple[int, ...]) -> None:
        """The ``normalization`` of the description (``{"mean": m, "std": s}``, each a number or one per channel
        of a ``[C, H, W]`` input) as ``[D]`` buffers, not tensors of the checkpoint; ``ValueError`` naming what is
        wrong. The encoder sees (x - m) / s; a Gaussian decoder models it too, so log p(x) = log p((x - m) / s)
        - sum log s (the change of variables, exact); a discrete likelihood models x itself."""
        norm = self.config.normalization
        self._density_normalized, self._log_jacobian = False, 0.0
        if norm is None:
            self.norm_mean = self.norm_std = None
            return
        channels = shape[0] if len(shape) == 3 else 1
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise ValueError(f'normalization must be {{"mean": m, "std": s}}, got {norm!r}')
        values = []
        for key in ("mean", "std"):
            v = norm[key]
            v = [v] if isinstance(v, int | float) and not isinstance(v, bool) else v
            if (
                not isinstance(v, list)
                or len(v) not in (1, channels)
                or not all(isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) for e in v)
            ):
                raise ValueError(
                    f"normalization {key}: a finite number or {channels} (one per channel), got {norm[key]!r}"
                )
            if key == "std" and min(v) <= 0:
                raise ValueError(f"normalization std must be positive, got {norm[key]!r}")
            # one per channel: each channel's H * W values in turn (channels first); one: all D values
            values.append(torch.tensor(v, dtype=torch.float32).repeat_interleave(math.prod(shape) // len(v)))
        self.register_buffer("norm_mean", values[0], persistent=False)
        self.register_buffer("norm_std", values[1], persistent=False)
        if self.likelihood == "gaussian":  # on the CPU from the constants: the model may be built on the meta device
            std = torch.tensor(v, dtype=torch.float32, device="cpu").double()  # the std, as the buffer holds it
            self._density_normalized = True
            self._log_jacobian = -float(std.log().sum()) * (math.prod(shape) // len(v))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees of ``x`` ``[..., D]``."""
        return x if self.norm_mean is None or self.norm_std is None else (x - self.norm_mean) / self.norm_std

    def log_jacobian(self) -> float:
        """-sum log s where a Gaussian decoder models the normalised data, else 0."""
        return self._log_jacobian

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_sigma(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.scale == "log_sigma":
            return raw
        if self.config.scale == "log_var":
            return 0.5 * raw
        return torch.log(F.softplus(raw))

    def _x_log_sigma(self) -> torch.Tensor | float:
        return self.log_sigma_x if self._learns_scale else float(self.config.log_sigma_x)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        c, out = self.config, self.decode(z)
        if not self._density_normalized:  # x as it is: no normalisation, or a likelihood of x itself
            return observation_log_prob(c.likelihood, x, out, c.gaussian_scale, c.mixtures, self._x_log_sigma())
        log_p = observation_log_prob(
            c.likelihood, self.normalize(x), out, c.gaussian_scale, c.mixtures, self._x_log_sigma()
        )
        return log_p + self._log_jacobian  # the change of variables x -> (x - m) / s

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        draw = sample_observation(
            c.likelihood, self.decode(z), c.gaussian_scale, c.mixtures, self._x_log_sigma(), generator
        )
        if not self._density_normalized:
            return draw
        assert self.norm_mean is not None and self.norm_std is not None
        return self.norm_mean + self.norm_std * draw


class MLPVAE(Observation, GaussianLatentModel):
    family = "mlp_vae"

    def __init__(self, config: MLPVAEConfig, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config.input_dim, input_shape)
        self.config = c = config
        self.likelihood = c.likelihood
        self.init_normalization(self.input_shape)
        self.latent_sizes = [c.latent]
        self.encoder = mlp([c.input_dim, *c.encoder], ACTIVATIONS[c.activation])
        self.mu = nn.Linear(c.encoder[-1] if c.encoder else c.input_dim, c.latent)
        self.scale = nn.Linear(c.encoder[-1] if c.encoder else c.input_dim, c.latent)
        self.decoder = mlp([c.latent, *c.decoder], ACTIVATIONS[c.activation])
        params = params_per_value(c.likelihood, c.gaussian_scale, c.mixtures)
        self.out = nn.Linear(c.decoder[-1] if c.decoder else c.latent, params * c.input_dim)
        self.init_learned_scale(c.input_dim)

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def elements_per_sample(self) -> int:
        params = params_per_value(self.config.likelihood, self.config.gaussian_scale, self.config.mixtures)
        return (2 + 2 * params) * self.config.input_dim + 2 * sum(self.config.decoder) + 4 * self.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.normalize(x))
        return self.mu(h), self.log_sigma(self.scale(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(z))
