"""Pareto k-hat of importance weights, as in Pareto-smoothed importance sampling.

Vehtari, Simpson, Gelman, Yao and Gabry (2024), "Pareto smoothed importance sampling", JMLR 25(72):
fit a generalised Pareto distribution to the largest weights; its shape k-hat says how many moments the
weight distribution has, hence whether an importance-sampling estimate can be trusted. The fit is the
profile-posterior estimator of Zhang and Stephens (2009) with the weakly informative prior on k-hat
that PSIS uses. Batched over B without a Python loop; everything in float64.
"""

from __future__ import annotations

import math

import torch

from ._validate import check_log_weights

__all__ = ["gpd_fit", "khat", "khat_threshold", "tail_length"]

PRIOR_BS = 3.0  # Zhang-Stephens prior scale for theta, relative to the first quartile
PRIOR_K = 10.0  # weight of the weak prior pulling k-hat towards 0.5 (Vehtari et al. 2024, appendix)
MIN_TAIL = 5  # fewer exceedances than this cannot be fitted


def tail_length(k: int) -> int:
    """Tail size ``ceil(min(k / 5, 3 sqrt(k)))`` (Vehtari et al. 2024, section 3)."""
    return math.ceil(min(k / 5, 3 * math.sqrt(k)))


def khat_threshold(k: int) -> float:
    """k-hat below which a k-sample estimate is reliable: ``min(1 - 1/log10(k), 0.7)``."""
    return min(1 - 1 / math.log10(k), 0.7) if k > 1 else 0.0


def gpd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised-Pareto fit to exceedances (Zhang and Stephens 2009, with the PSIS prior on k).

    Parameters
    ----------
    x : ``[n, B]`` float64 exceedances over the threshold, sorted ascending along dim 0, n >= 5.

    Returns
    -------
    ``(k, sigma)``, each ``[B]`` float64; ``nan`` where the fit is degenerate (all exceedances zero).
    """
    n = x.shape[0]
    num_grid = 30 + int(math.sqrt(n))
    grid = torch.arange(1, num_grid + 1, dtype=x.dtype, device=x.device)
    quartile = x[int(n / 4 + 0.5) - 1]  # [B]
    # Candidate theta values (Zhang and Stephens 2009, section 3), [m, B].
    theta = (1 - torch.sqrt(num_grid / (grid - 0.5))).unsqueeze(1) / (PRIOR_BS * quartile) + 1 / x[-1]
    k_grid = torch.log1p(-theta.unsqueeze(1) * x.unsqueeze(0)).mean(dim=1)  # [m, B]
    profile_loglik = n * (torch.log(-theta / k_grid) - k_grid - 1)  # [m, B]
    post_weights = torch.softmax(profile_loglik, dim=0)  # [m, B]
    theta_post = (theta * post_weights).sum(dim=0)  # [B]
    k_post = torch.log1p(-theta_post * x).mean(dim=0)  # [B]
    sigma = -k_post / theta_post
    k_post = (n * k_post + PRIOR_K * 0.5) / (n + PRIOR_K)
    bad = ~torch.isfinite(k_post) | ~torch.isfinite(sigma)
    nan = torch.full_like(k_post, math.nan)
    return torch.where(bad, nan, k_post), torch.where(bad, nan, sigma)


def khat(log_w: torch.Tensor) -> torch.Tensor:
    """Pareto k-hat of the importance weights ``exp(log_w)``.

    Parameters
    ----------
    log_w : ``[k, B]`` float tensor.

    Returns
    -------
    ``[B]`` in ``log_w``'s dtype; ``nan`` when the tail has fewer than 5 points (k < 25) or all tail
    weights are equal.
    """
    check_log_weights(log_w)
    return _khat(log_w)


def _khat(log_w: torch.Tensor) -> torch.Tensor:
    """``khat`` on log-weights already validated."""
    k, batch = log_w.shape
    num_tail = tail_length(k)
    if num_tail < MIN_TAIL or num_tail >= k:
        return torch.full((batch,), math.nan, dtype=log_w.dtype, device=log_w.device)
    lw = log_w.double()
    top, _ = torch.topk(lw, num_tail + 1, dim=0)  # [M+1, B], descending
    shift = top[0]  # [B]; exceedances are scaled by exp(-max), which leaves the shape k unchanged
    cutoff = top[num_tail]  # [B]
    tail = top[:num_tail].flip(0)  # [M, B], ascending
    exceed = torch.exp(tail - shift) - torch.exp(cutoff - shift)  # [M, B]
    k_hat, _ = gpd_fit(exceed)
    return k_hat.to(log_w.dtype)
