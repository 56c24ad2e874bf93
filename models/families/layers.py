"""Building blocks shared by the model families: MLPs, diagonal Gaussians, and chunking over k."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "HALF_LOG_2PI",
    "GaussianHead",
    "chunk_elements",
    "chunks_over_k",
    "mlp",
    "normal_log_prob",
    "standard_normal_log_prob",
]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """``Linear -> activation`` for every consecutive pair in ``sizes`` (tanh: Burda et al. 2016, appendix C)."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Hidden MLP then a diagonal Gaussian: ``(mu, log_sigma)`` with ``sigma = exp(linear)``."""

    def __init__(self, fan_in: int, hidden: list[int], latent: int) -> None:
        super().__init__()
        self.body = mlp([fan_in, *hidden])
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_sigma = nn.Linear(hidden[-1], latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_sigma(h)


def normal_log_prob(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(log_sigma))^2)`` summed over the last dimension."""
    u = (z - mu) * torch.exp(-log_sigma)
    return (-0.5 * u * u - log_sigma - HALF_LOG_2PI).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return (-0.5 * z * z - HALF_LOG_2PI).sum(-1)


def chunk_elements(device: torch.device) -> int:
    """Default activation elements per chunk over k on ``device``.

    On a CPU, 2^23 (a chunk's activations ~32 MiB in float32) ran as fast as or faster than 2^24 to
    2^26 in the sweep of docs/performance.md, with a quarter of the memory. A GPU wants chunks as large
    as memory comfortably allows, so that kernel launches do not dominate."""
    return 2**23 if device.type == "cpu" else 2**28


def chunks_over_k(
    k: int, batch: int, elements_per_sample: int, max_elements: int | None, device: torch.device
) -> Iterator[slice]:
    """Slices of ``range(k)`` whose ``rows x batch x elements_per_sample`` stays within ``max_elements``
    (``None``: ``chunk_elements(device)``), at least one row per chunk."""
    budget = max_elements if max_elements is not None else chunk_elements(device)
    rows = max(1, budget // max(1, batch * elements_per_sample))
    for start in range(0, k, rows):
        yield slice(start, min(k, start + rows))
