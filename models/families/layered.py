"""A VAE whose networks are described by data: a list of layers for the encoder's trunk and one for the
decoder (convolutional, transposed-convolutional, residual, normalising, reshaping), so that the VAEs people
train for images can be served from their weights and a description, never from their code.

Encoder: x reshaped to ``input_shape`` -> the ``encoder`` layers -> flattened -> the heads ``mu`` and
``scale`` (Linear, as in ``mlp_vae``). Decoder: z ``[latent]`` -> the ``decoder`` layers, whose output must
hold ``prod(input_shape)`` values: Bernoulli logits, or a Gaussian's mean (``mlp_vae``'s likelihoods).

A layer is an activation's name (``relu``, ``tanh``, ...; ``mlp_vae.ACTIVATIONS``), ``flatten``, or an object
with a ``type``: ``linear`` (``out``), ``conv2d`` and ``conv_transpose2d`` (``out``, ``kernel``, ``stride``,
``padding``, and ``output_padding`` for the transposed one), ``unflatten`` (``shape``), ``upsample``
(``scale``), ``batchnorm`` (inference statistics), ``layernorm``, ``groupnorm`` (``groups``), ``dropout`` (a
no-op at evaluation), and ``residual`` (``layers``, a sub-list, and ``project``: a 1x1 convolution or a
Linear on the skip path when the sub-list changes the channels or width). Tensor names follow the lists'
positions: ``encoder.3.weight``, ``decoder.5.body.1.weight``, ``decoder.5.project.weight`` (docs/checkpoints.md).

Every shape is traced on the meta device when the model is built, before any memory is allocated; a layer
that does not fit its input is one ``ValueError`` naming the layer, what it takes and what it was given, and
a description asking for more than ``MAX_PARAMETERS`` parameters is refused before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .base import GaussianLatentModel
from .likelihoods import ObservationName, ScaleName, check_observation, params_per_value
from .mlp_vae import ACTIVATIONS, Observation, Scale

__all__ = ["MAX_PARAMETERS", "LayeredVAE", "LayeredVAEConfig", "build_layers"]

MAX_PARAMETERS = 500_000_000  # 2 GB of float32: far beyond any VAE this service is for


class _Residual(nn.Module):
    """``body(x) + project(x)`` (``project`` the identity unless the body changes the width or channels)."""

    def __init__(self, body: nn.Sequential, project: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.project = project

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.project is None else self.project(x))


def _int(spec: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if default is not None else 1):
        raise ValueError(
            f"{where}: {key!r} must be a {'non-negative' if default is not None else 'positive'} integer, got {value!r}"
        )
    return value


def _layer(spec: Any, shape: tuple[int, ...], where: str) -> nn.Module:
    """One layer for an input of ``shape`` (without the batch dimension)."""
    if isinstance(spec, str):
        if spec in ACTIVATIONS:
            return ACTIVATIONS[spec]()
        if spec == "flatten":
            return nn.Flatten()
        raise ValueError(f"{where}: {spec!r} is not an activation ({', '.join(sorted(ACTIVATIONS))}) or 'flatten'")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where}: a layer is an activation's name or an object with a 'type', got {spec!r}")
    kind = spec["type"]
    if kind in ACTIVATIONS or kind == "flatten":
        return _layer(kind, shape, where)
    if kind == "linear":
        if len(shape) != 1:
            raise ValueError(f"{where} (linear): takes a flat input, got {list(shape)}; put 'flatten' before it")
        return nn.Linear(shape[0], _int(spec, "out", where))
    if kind in ("conv2d", "conv_transpose2d"):
        if len(shape) != 3:
            raise ValueError(f"{where} ({kind}): takes [channels, height, width], got {list(shape)}")
        args = (shape[0], _int(spec, "out", where), _int(spec, "kernel", where))
        stride, padding = _int(spec, "stride", where, 1), _int(spec, "padding", where, 0)
        if kind == "conv2d":
            return nn.Conv2d(*args, stride=max(stride, 1), padding=padding)
        output_padding = _int(spec, "output_padding", where, 0)
        return nn.ConvTranspose2d(*args, stride=max(stride, 1), padding=padding, output_padding=output_padding)
    if kind == "unflatten":
        target = spec.get("shape")
        if not isinstance(target, list) or not all(isinstance(s, int) and s > 0 for s in target):
            raise ValueError(f"{where} (unflatten): 'shape' must be a list of positive integers, got {target!r}")
        if len(shape) != 1 or math.prod(target) != shape[0]:
            raise ValueError(f"{where} (unflatten): {list(shape)} cannot be reshaped to {target}")
        return nn.Unflatten(1, tuple(target))
    if kind == "upsample":
        return nn.Upsample(scale_factor=_int(spec, "scale", where), mode="nearest")
    if kind == "batchnorm":
        if len(shape) not in (1, 3):
            raise ValueError(f"{where} (batchnorm): takes [features] or [channels, height, width], got {list(shape)}")
        return nn.BatchNorm1d(shape[0]) if len(shape) == 1 else nn.BatchNorm2d(shape[0])
    if kind == "layernorm":
        return nn.LayerNorm(list(shape))
    if kind == "groupnorm":
        groups = _int(spec, "groups", where)
        if len(shape) < 2 or shape[0] % groups:
            raise ValueError(f"{where} (groupnorm): {groups} groups do not divide the channels of {list(shape)}")
        return nn.GroupNorm(groups, shape[0])
    if kind == "dropout":
        return nn.Dropout(float(spec.get("p", 0.5)))
    if kind == "residual":
        body, out_shape = build_layers(spec.get("layers"), shape, f"{where}.body")
        project: nn.Module | None = None
        if spec.get("project"):
            if len(shape) == 3 and len(out_shape) == 3 and shape[1:] == out_shape[1:]:
                project = nn.Conv2d(shape[0], out_shape[0], 1)
            elif len(shape) == 1 and len(out_shape) == 1:
                project = nn.Linear(shape[0], out_shape[0])
            else:
                raise ValueError(f"{where} (residual): no projection takes {list(shape)} to {list(out_shape)}")
        elif out_shape != shape:
            raise ValueError(
                f'{where} (residual): its layers turn {list(shape)} into {list(out_shape)}; add "project": true'
            )
        return _Residual(body, project)
    raise ValueError(f"{where}: unknown layer type {kind!r}")


def build_layers(specs: Any, shape: tuple[int, ...], where: str) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The layers of ``specs`` for inputs of ``shape``, and their output's shape. Call on the meta device to
    check a description without allocating (``LayeredVAE`` does)."""
    if not isinstance(specs, list):
        raise ValueError(f"{where}: a list of layers, got {specs!r}")
    layers = []
    for i, spec in enumerate(specs):
        layer = _layer(spec, shape, f"{where}[{i}]").eval()  # batch norm's inference statistics
        try:
            out = layer(torch.empty(1, *shape, device="meta"))
        except RuntimeError as exc:  # a convolution whose kernel is larger than its input, and the like
            raise ValueError(
                f"{where}[{i}]: does not fit its input {list(shape)} ({str(exc).splitlines()[0]})"
            ) from None
        if min(out.shape[1:], default=1) < 1:
            raise ValueError(f"{where}[{i}]: turns {list(shape)} into the empty {list(out.shape[1:])}")
        shape = tuple(out.shape[1:])
        layers.append(layer)
    return nn.Sequential(*layers), shape


def _materialize(layers: nn.Sequential) -> nn.Sequential:
    """Layers built on the meta device, allocated on the CPU and initialised as torch initialises them."""
    layers = layers.to_empty(device="cpu")
    for module in layers.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return layers


@dataclass(frozen=True)
class LayeredVAEConfig:
    latent: int = 16
    encoder: list[Any] | None = None  # the trunk's layers, input side first
    decoder: list[Any] | None = None  # the decoder's layers, latent side first
    scale: Scale = "log_var"  # what the encoder's scale head outputs
    likelihood: ObservationName = "bernoulli"
    gaussian_scale: ScaleName = "fixed"
    log_sigma_x: float = 0.0
    mixtures: int = 5
    normalization: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.latent, int) or self.latent < 1:
            raise ValueError(f"latent must be a positive integer, got {self.latent!r}")
        if self.scale not in ("log_sigma", "log_var", "softplus"):
            raise ValueError(f"scale {self.scale!r} is not log_sigma, log_var or softplus")
        check_observation(self.likelihood, self.gaussian_scale, self.mixtures)


class LayeredVAE(Observation, GaussianLatentModel):
    family = "layered_vae"

    def __init__(self, config: LayeredVAEConfig, input_shape: tuple[int, ...] | None = None) -> None:
        if input_shape is None:
            raise ValueError("layered_vae needs the checkpoint's input_shape, e.g. [1, 28, 28]")
        super().__init__(math.prod(input_shape), input_shape)
        self.config = c = config
        self.likelihood = c.likelihood
        self.init_normalization(tuple(input_shape))
        self.latent_sizes = [c.latent]
        shape = tuple(input_shape)
        with torch.device("meta"):  # every shape and the parameter count, before any allocation
            trunk, trunk_out = build_layers(c.encoder or [], shape, "encoder")
            decoder, out = build_layers(c.decoder or [], (c.latent,), "decoder")
            width = math.prod(trunk_out)
            count = sum(p.numel() for p in (*trunk.parameters(), *decoder.parameters())) + 2 * (width + 1) * c.latent
        params = params_per_value(c.likelihood, c.gaussian_scale, c.mixtures)
        wanted = ((params * shape[0], *shape[1:]), (params * self.input_dim,))
        if out not in wanted:
            per = f"{params} values per input value ({c.likelihood}), " if params > 1 else ""
            raise ValueError(
                f"decoder: its output is {list(out)}; {per}the model's input is {list(shape)}, so it must be "
                f"{list(wanted[0])} or [{wanted[1][0]}]"
            )
        if count > MAX_PARAMETERS:
            raise ValueError(f"the description asks for {count:,} parameters, over the limit {MAX_PARAMETERS:,}")
        self._decoder_elements = self._activations(decoder, (c.latent,))
        self.encoder = _materialize(trunk)
        self.mu = nn.Linear(width, c.latent)
        self.scale = nn.Linear(width, c.latent)
        self.decoder = _materialize(decoder)
        self.init_learned_scale(self.input_dim)
        self.eval()  # batch norm's inference statistics, dropout off: this model is only ever evaluated

    @staticmethod
    def _activations(layers: nn.Sequential, shape: tuple[int, ...]) -> int:
        """Values every layer of ``layers`` produces for one input (meta device): the decoder's memory per sample."""
        total, x = 0, torch.empty(1, *shape, device="meta")
        for layer in layers:
            x = layer(x)
            total += x.numel()
        return total

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def elements_per_sample(self) -> int:
        params = params_per_value(self.config.likelihood, self.config.gaussian_scale, self.config.mixtures)
        return (2 + params) * self.input_dim + 2 * self._decoder_elements + 4 * self.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.normalize(x).reshape(-1, *self.input_shape)).flatten(1)
        return self.mu(h), self.log_sigma(self.scale(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]  # [k, B] or [B]: the layers take one batch dimension
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*lead, -1)
