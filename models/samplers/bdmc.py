"""Bidirectional Monte Carlo (Grosse et al. 2015, 2016; Wu et al. 2017): on data simulated from the
model, forward AIS gives a stochastic lower bound on log p(x) and reverse AIS from the exact posterior
sample a stochastic upper bound. Their gap bounds the error of that AIS setting on such data."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ..estimators import log_mean_exp
from ..families import LatentVariableModel
from ..plan import AIS
from .ais import AISResult, ais, reverse_ais, tune

__all__ = ["BDMCResult", "BDMCSummary", "bdmc", "simulate", "summarize"]


class BDMCResult(NamedTuple):
    """``x`` ``[B, input_dim]`` the simulated inputs; ``lower`` and ``upper`` ``[B]`` float64 bounds;
    ``forward`` and ``reverse``: the two AIS runs (``reverse.log_w`` holds log-weights whose negatives
    estimate 1/p(x))."""

    x: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    forward: AISResult
    reverse: AISResult


class BDMCSummary(NamedTuple):
    """Over inputs: the mean bounds, the mean gap upper - lower, and its Monte Carlo standard error."""

    mean_lower: float
    mean_upper: float
    mean_gap: float
    mean_gap_std_err: float


def summarize(result: BDMCResult, lower_se: torch.Tensor, upper_se: torch.Tensor) -> BDMCSummary:
    """The means over inputs, the gap's standard error from the bounds' per-input standard errors
    (``[B]`` each): a mean gap within about two of them of zero is zero."""
    n = result.lower.shape[0]
    se = float((lower_se.double().pow(2) + upper_se.double().pow(2)).sum().sqrt()) / n
    return BDMCSummary(
        float(result.lower.mean()), float(result.upper.mean()), float((result.upper - result.lower).mean()), se
    )


def simulate(model: LatentVariableModel, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, input_dim], z [n, latent_dim])`` drawn from the model: z ~ p(z), x ~ p(x | z). z is then
    an exact sample of the posterior p(z | x), the start of reverse AIS."""
    z = model.sample_prior((n,), generator)
    return model.sample_x(z, generator), z


def bdmc(
    model: LatentVariableModel,
    n: int,
    k: int,
    config: AIS,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: Callable[[], None] | None = None,
) -> BDMCResult:
    """Simulate ``n`` inputs, then run forward and reverse AIS with ``k`` chains each per input, both
    with the step sizes of one tuning pass, chains chunked within ``max_elements``."""
    x, z = simulate(model, n, generator)
    steps = tune(model, x, config, generator, check_fn, estimating=2 * k)  # both directions
    forward = ais(model, x, k, config, generator, step_sizes=steps, max_elements=max_elements, check_fn=check_fn)
    reverse = reverse_ais(
        model, x, z, k, config, generator, step_sizes=steps, max_elements=max_elements, check_fn=check_fn
    )
    lower = log_mean_exp(forward.log_w, dim=0)
    upper = -log_mean_exp(-reverse.log_w, dim=0)  # E[1/w_rev] = 1/p(x), and Jensen
    return BDMCResult(x, lower, upper, forward, reverse)
