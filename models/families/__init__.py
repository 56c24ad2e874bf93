"""Model families: the types the service dispatches on, and the registry that rebuilds a model from a
checkpoint's family name and architecture."""

from __future__ import annotations

from typing import Any

from .base import (
    Classifier,
    Family,
    GaussianLatentModel,
    LatentVariableModel,
    Likelihood,
    default_input_shape,
    model_device,
)
from .bbb import BayesMLP, BBBConfig, PredictiveSummary, predictive_summary
from .layered import LayeredVAE, LayeredVAEConfig
from .layers import chunks_over_k
from .linear_gaussian import LinearGaussian, LinearGaussianConfig
from .mlp_vae import MLPVAE, MLPVAEConfig
from .vae import VAE, VAEConfig

__all__ = [
    "FAMILIES",
    "MLPVAE",
    "VAE",
    "BBBConfig",
    "BayesMLP",
    "Classifier",
    "Family",
    "GaussianLatentModel",
    "LatentVariableModel",
    "LayeredVAE",
    "LayeredVAEConfig",
    "Likelihood",
    "LinearGaussian",
    "LinearGaussianConfig",
    "MLPVAEConfig",
    "PredictiveSummary",
    "VAEConfig",
    "build_model",
    "chunks_over_k",
    "default_input_shape",
    "model_device",
    "predictive_summary",
    "register_family",
]

# family name -> (model class, config dataclass); ``register_family`` adds to it.
FAMILIES: dict[str, tuple[type[Family], type[Any]]] = {}


def register_family(module_cls: type[Family], config_cls: type[Any]) -> None:
    """Make ``module_cls`` (constructed as ``module_cls(config_cls(**arch), input_shape)``) loadable by
    its ``family`` name."""
    FAMILIES[module_cls.family] = (module_cls, config_cls)


for _cls, _config in (
    (VAE, VAEConfig),
    (LinearGaussian, LinearGaussianConfig),
    (BayesMLP, BBBConfig),
    (MLPVAE, MLPVAEConfig),
    (LayeredVAE, LayeredVAEConfig),
):
    register_family(_cls, _config)


def build_model(family: str, arch: dict[str, Any], input_shape: list[int] | tuple[int, ...] | None = None) -> Family:
    """A freshly initialised model of ``family`` with architecture ``arch`` and ``input_shape``;
    ``ValueError`` if any is unknown or malformed."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    if not isinstance(arch, dict):
        raise ValueError("arch must be a JSON object")
    module_cls, config_cls = FAMILIES[family]
    try:
        config = config_cls(**arch)
    except TypeError as exc:
        raise ValueError(f"architecture does not fit family {family!r}: {exc}") from None
    if input_shape is not None and (
        not isinstance(input_shape, list | tuple)
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in input_shape)
    ):
        raise ValueError(f"input_shape must be a list of positive integers, got {input_shape!r}")
    return module_cls(config, None if input_shape is None else tuple(input_shape))
