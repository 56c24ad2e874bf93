"""Summaries of several estimators run on common random numbers over replicates (docs/api.md, compare)."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["ReplicateSummary", "summarize_replicates"]


class ReplicateSummary(NamedTuple):
    """Per input (each ``[B]`` float64): ``mean`` over replicates, ``sd`` across replicates (unbiased),
    and ``diff_to_reference`` = mean of (estimate - reference) on the same draws (``None`` without one);
    over inputs: ``mean_over_inputs`` and ``sd_over_inputs``, the root mean square of the per-input sd."""

    mean: torch.Tensor
    sd: torch.Tensor
    diff_to_reference: torch.Tensor | None
    mean_over_inputs: float
    sd_over_inputs: float


def summarize_replicates(values: torch.Tensor, reference: torch.Tensor | None = None) -> ReplicateSummary:
    """``values``: ``[R, B]`` estimates, one row per replicate; ``reference``: ``[R, B]`` on the same draws."""
    if values.dim() != 2 or values.shape[0] < 2:
        raise ValueError(f"need [R >= 2, B] replicate values, got shape {tuple(values.shape)}")
    v = values.double()
    diff = None if reference is None else (v - reference.double()).mean(dim=0)
    mean, sd = v.mean(dim=0), v.std(dim=0, unbiased=True)
    return ReplicateSummary(mean, sd, diff, float(mean.mean()), float(sd.pow(2).mean().sqrt()))
