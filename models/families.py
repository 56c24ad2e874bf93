"""The model families a checkpoint may name, and how to rebuild each from its stored architecture."""

from __future__ import annotations

from typing import Any

from torch import nn

from .bbb import BayesMLP, BBBConfig
from .linear_gaussian import LinearGaussian, LinearGaussianConfig
from .vae import VAE, VAEConfig

__all__ = ["FAMILIES", "build_model"]


# family name -> (module class, config dataclass)
FAMILIES: dict[str, tuple[type[nn.Module], type[Any]]] = {
    "vae": (VAE, VAEConfig),
    "linear_gaussian": (LinearGaussian, LinearGaussianConfig),
    "bbb": (BayesMLP, BBBConfig),
}


def build_model(family: str, arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised model of ``family`` with architecture ``arch``; ``ValueError`` if either is
    unknown or malformed."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    module_cls, config_cls = FAMILIES[family]
    try:
        config = config_cls(**arch)
    except TypeError as exc:
        raise ValueError(f"architecture does not fit family {family!r}: {exc}") from None
    return module_cls(config)
