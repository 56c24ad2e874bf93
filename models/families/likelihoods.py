"""p(x | z) for the VAEs described by data (``mlp_vae``, ``layered_vae``): what the decoder's output means.

The decoder puts out ``P`` values for each of the ``D`` data values, laid out parameter-major (``[P, D]``
flattened; for a convolutional decoder, ``P * C`` channels for a ``C``-channel image, parameter ``p``'s
channels ``p * C .. (p + 1) * C - 1``):

| likelihood | P | the P values |
|---|---|---|
| ``bernoulli`` | 1 | logits |
| ``gaussian`` | 1, or 2 with ``scale: predicted`` | mean (then log sigma) |
| ``discretized_logistic`` | 1, or 2 with ``scale: predicted`` | mean on [-1, 1] (then log scale) |
| ``discretized_logistic_mixture`` | 3 M | M mixture logits, M means, M log scales |
| ``categorical_256`` | 256 | logits of the values 0..255 |

A Gaussian's or a logistic's scale that is not ``predicted`` is ``fixed`` (one number in the description),
``global`` (one learned number, the tensor ``log_sigma_x`` of shape ``[]``) or ``learned`` (one per data
value, ``log_sigma_x`` of shape ``[D]``). The discretised likelihoods are PixelCNN++'s (Salimans et al. 2017):
a logistic on [-1, 1] binned into the 256 values, the end bins taking the tails, with predicted log scales
held above -7 as there; like the 256-way categorical they are probabilities over 8-bit data, so log p(x) <= 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from .layers import HALF_LOG_2PI

__all__ = [
    "EIGHT_BIT",
    "LIKELIHOODS",
    "SCALES",
    "ObservationName",
    "ScaleName",
    "check_observation",
    "discretized_logistic_log_prob",
    "learned_scale_shape",
    "observation_log_prob",
    "params_per_value",
    "sample_observation",
]

ObservationName = Literal[
    "bernoulli", "gaussian", "discretized_logistic", "discretized_logistic_mixture", "categorical_256"
]
ScaleName = Literal["fixed", "global", "learned", "predicted"]
LIKELIHOODS: tuple[str, ...] = (
    "bernoulli",
    "gaussian",
    "discretized_logistic",
    "discretized_logistic_mixture",
    "categorical_256",
)
SCALES: tuple[str, ...] = ("fixed", "global", "learned", "predicted")
# Likelihoods over the 256 values k / 255 of 8-bit data: their domain is uint8.
EIGHT_BIT: tuple[str, ...] = ("discretized_logistic", "discretized_logistic_mixture", "categorical_256")
MIN_LOG_SCALE = -7.0  # PixelCNN++'s floor on a predicted logistic log scale


def check_observation(likelihood: str, scale: str, mixtures: int) -> None:
    """``ValueError`` naming what is wrong with a likelihood, its scale and mixture count."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
    if scale not in SCALES:
        raise ValueError(f"gaussian_scale {scale!r} is not one of {', '.join(SCALES)}")
    if not isinstance(mixtures, int) or isinstance(mixtures, bool) or mixtures < 1:
        raise ValueError(f"mixtures must be a positive integer, got {mixtures!r}")


def params_per_value(likelihood: str, scale: str, mixtures: int) -> int:
    """How many decoder outputs each data value takes (the table above)."""
    if likelihood == "discretized_logistic_mixture":
        return 3 * mixtures
    if likelihood == "categorical_256":
        return 256
    return 2 if likelihood != "bernoulli" and scale == "predicted" else 1


def learned_scale_shape(likelihood: str, scale: str, dims: int) -> tuple[int, ...] | None:
    """The shape of the learned log scale ``log_sigma_x`` (``[]`` global, ``[D]`` per value), or None where the
    likelihood learns none: Bernoulli and the categorical have no scale, and the mixture's and a predicted
    scale come from the decoder, whatever ``scale`` says."""
    if likelihood not in ("gaussian", "discretized_logistic"):
        return None
    return {"global": (), "learned": (dims,)}.get(scale)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float) -> torch.Tensor:
    """log P(x) per value of 8-bit data (x in [0, 1] on the grid k / 255) under a logistic of ``mean`` and
    ``log_scale`` on [-1, 1] binned into 256 intervals of width 2/255, the end bins taking the tails (PixelCNN++,
    Salimans et al. 2017): always a probability, so log P <= 0.

    With a, b the bin's edges in units of the scale, an interior bin's log P is log(sigmoid(a) - sigmoid(b)),
    computed without cancellation in either tail as log sigmoid(hi) + log(1 - exp(-(log sigmoid(hi) - log
    sigmoid(lo)))) with (hi, lo) = (a, b), or (-b, -a) where the bin lies above the mean (the same difference,
    further from 1). The end bins are P(X < a) = sigmoid(a) and P(X > b) = sigmoid(-b): the same log sigmoid(hi)
    with the pair chosen accordingly, so every value takes two log-sigmoids, not four.

    Where the two logs nearly agree (a bin narrow beside the scale) their difference g has lost digits to
    rounding (relative error eps / g); there the density at the bin's middle m times its width is used instead,
    log sigmoid(m) + log sigmoid(-m) + log(a - b) = 2 log sigmoid(m) - m + log(2/255) - log_scale, whose relative
    error is about (a - b)^2 / 24 <= g^2 / 6 (on the side the pair picks, g >= (a - b) / 2). The switch at
    g = (6 eps)^(1/3) makes the two errors equal: about 1e-5 in float32, 1e-11 in float64. Every branch stays
    finite, so that none's gradient is NaN."""
    inv = math.exp(-log_scale) if isinstance(log_scale, float) else torch.exp(-log_scale)
    middle = (2 * x - 1 - mean) * inv  # the bin's middle, k / 255 -> [-1, 1], in units of the scale
    half = inv / 255  # half the bin's width: a, b = middle +- half
    first, last = x <= 0.5 / 255, x >= 254.5 / 255  # k = 0 and k = 255
    flip = ((middle > 0) | last) & ~first
    turned = torch.where(flip, -middle, middle)  # (hi, lo) = (a, b), or (-b, -a): turned +- half
    log_hi, log_lo = F.logsigmoid(turned + half), F.logsigmoid(turned - half)
    gap = log_hi - log_lo
    narrow = (6 * torch.finfo(gap.dtype).eps) ** (1 / 3)
    exact = log_hi + torch.log(-torch.expm1(-gap.clamp(min=narrow)))
    midpoint = 2 * F.logsigmoid(turned) - turned + (math.log(2 / 255) - log_scale)  # symmetric in the turn
    return torch.where(first | last, log_hi, torch.where(gap < narrow, midpoint, exact))


def _split(out: torch.Tensor, params: int) -> torch.Tensor:
    """The decoder's ``[..., P * D]`` as ``[..., P, D]``."""
    return out.reshape(*out.shape[:-1], params, out.shape[-1] // params)


def _parts(
    likelihood: str, out: torch.Tensor, scale: str, mixtures: int, log_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """(the location or logits ``[..., P', D]`` or ``[..., D]``, the log scale) from the decoder's output."""
    params = params_per_value(likelihood, scale, mixtures)
    if likelihood == "discretized_logistic_mixture":
        parts = _split(out, params)
        return parts, parts[..., 2 * mixtures :, :].clamp(min=MIN_LOG_SCALE)
    if likelihood == "categorical_256":
        return _split(out, params), 0.0
    if params == 2:
        mean, raw = _split(out, 2).unbind(-2)
        return mean, (raw.clamp(min=MIN_LOG_SCALE) if likelihood == "discretized_logistic" else raw)
    return out, log_scale


def _eight_bit_index(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255).long().clamp(0, 255)


def observation_log_prob(
    likelihood: str, x: torch.Tensor, out: torch.Tensor, scale: str, mixtures: int, log_scale: torch.Tensor | float
) -> torch.Tensor:
    """log p(x | z) summed over the ``D`` values: ``x`` ``[B, D]``, the decoder's ``out`` ``[..., B, P * D]``,
    ``log_scale`` the fixed, global or per-value one (unused when predicted)."""
    loc, log_s = _parts(likelihood, out, scale, mixtures, log_scale)
    if likelihood == "bernoulli":
        return (x * loc - F.softplus(loc)).sum(-1)
    if likelihood == "discretized_logistic":
        return discretized_logistic_log_prob(x, loc, log_s).sum(-1)
    if likelihood == "discretized_logistic_mixture":
        m = mixtures
        weights = F.log_softmax(loc[..., :m, :], dim=-2)
        per = discretized_logistic_log_prob(x.unsqueeze(-2), loc[..., m : 2 * m, :], log_s)
        return torch.logsumexp(weights + per, dim=-2).sum(-1)
    if likelihood == "categorical_256":
        index = _eight_bit_index(x).expand(*loc.shape[:-2], x.shape[-1]).unsqueeze(-2)
        return F.log_softmax(loc, dim=-2).gather(-2, index).squeeze(-2).sum(-1)
    u = (x - loc) * math.exp(-log_s) if isinstance(log_s, float) else (x - loc) * torch.exp(-log_s)
    return (-0.5 * u * u - log_s - HALF_LOG_2PI).sum(-1)


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per column of ``logits`` ``[..., K, D]`` from softmax over K: the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator, device=generator.device, dtype=logits.dtype)
    return torch.argmax(logits - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12))), dim=-2)


def _logistic_draw(mean: torch.Tensor, log_s: torch.Tensor | float, generator: torch.Generator) -> torch.Tensor:
    """A logistic draw of ``mean`` and ``log_s`` on [-1, 1], put on the 8-bit grid of [0, 1]."""
    u = torch.rand(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype).clamp(1e-6, 1 - 1e-6)
    s = math.exp(log_s) if isinstance(log_s, float) else torch.exp(log_s)
    centred = (mean + s * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
    return torch.round((centred + 1) * 127.5) / 255


def sample_observation(
    likelihood: str,
    out: torch.Tensor,
    scale: str,
    mixtures: int,
    log_scale: torch.Tensor | float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One draw of x ``[..., D]`` from p(x | z) given the decoder's ``out`` ``[..., P * D]``."""
    loc, log_s = _parts(likelihood, out, scale, mixtures, log_scale)
    if likelihood == "bernoulli":
        u = torch.rand(loc.shape, generator=generator, device=generator.device, dtype=loc.dtype)
        return (u < torch.sigmoid(loc)).to(loc.dtype)
    if likelihood == "discretized_logistic":
        return _logistic_draw(loc, log_s, generator)
    if likelihood == "discretized_logistic_mixture":
        m = mixtures
        pick = _gumbel_argmax(loc[..., :m, :], generator).unsqueeze(-2)
        mean = loc[..., m : 2 * m, :].gather(-2, pick).squeeze(-2)
        assert isinstance(log_s, torch.Tensor)
        return _logistic_draw(mean, log_s.gather(-2, pick).squeeze(-2), generator)
    if likelihood == "categorical_256":
        return _gumbel_argmax(loc, generator).to(loc.dtype) / 255
    noise = torch.randn(loc.shape, generator=generator, device=generator.device, dtype=loc.dtype)
    return loc + (math.exp(log_s) if isinstance(log_s, float) else torch.exp(log_s)) * noise
