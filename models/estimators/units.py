"""log p(x) in bits per dimension, the unit image models are compared in.

For discrete data (a binary image's pixels, 8-bit values) log p(x) is a log-probability and bits per dimension
is -log2 p(x) / D. A density on [0, 1] (a Gaussian decoder on greyscale in [0, 1]) is read as the probability of
the 8-bit bin the value falls in, p(x) / 256^D (the usual dequantisation reading, exact as the density is flat
within a bin), which adds 8 bits per dimension. A density on real values of no stated scale has no such
reading: None."""

from __future__ import annotations

import math

import torch

__all__ = ["BIN_BITS", "bits_offset", "bits_per_dim", "bits_reading"]

# Bits per dimension added to a density on [0, 1] by reading it at 8-bit resolution: log2(256).
BIN_BITS = 8.0


def bits_offset(domain: str) -> float | None:
    """Bits per dimension to add to -log2 p(x) / D for data of ``domain`` (None: no discrete reading)."""
    return {"binary": 0.0, "uint8": 0.0, "unit": BIN_BITS}.get(domain)


def bits_per_dim(log_px: torch.Tensor, dims: int, offset: float) -> torch.Tensor:
    """``log_px`` (nats) as bits per dimension: -log_px / (dims ln 2) + offset; NaN where that is below 0 (a
    density so peaked that its 8-bit bin would hold a probability above 1: the binned reading does not hold)."""
    bits = -log_px / (dims * math.log(2)) + offset
    return bits.masked_fill(bits < 0, float("nan"))


def bits_reading(domain: str, dims: int, log_jacobian: float = 0.0) -> str:
    """How a model's bits per dimension are read, stated with every constant in them: the 8-bit bins of a
    density on [0, 1], and ``log_jacobian`` (nats), the change of variables of normalisation constants the
    model was trained with, already inside log p(x)."""
    offset = bits_offset(domain)
    if offset is None:
        return f"none: a density on real values ({domain}) has no bits-per-dimension reading"
    text = f"-log2 p(x) / {dims}" + (f" + {offset:g} (a density on [0, 1] read at 8-bit resolution)" if offset else "")
    if log_jacobian:
        text += (
            f"; log p(x) includes the normalisation's change of variables, {log_jacobian:+.4f} nats "
            f"({-log_jacobian / (dims * math.log(2)):+.4f} bits per dimension)"
        )
    return text
