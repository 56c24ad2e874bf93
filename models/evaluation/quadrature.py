"""log p(x) of a 2-D-latent model by integration on a grid: the ground truth for estimator checks.

p(x) = integral p(x, z) dz over z in R^2, by the midpoint rule in log space:
log p(x) ~= logsumexp_g log p(x, z_g) + log(cell area). The midpoint rule converges exponentially
fast for smooth, rapidly decaying integrands once the spacing resolves the posterior, so the work goes
into finding where the posterior is: a coarse grid over the prior's bulk (the window) locates every
cell within ``keep_nats`` of the largest log-joint, whatever the encoder believes, and a fine grid over
that region, widened by ``expand``, integrates. Checking convergence in resolution (``n``) and window
(``expand``) is the caller's (see tests/models/test_quadrature.py).
"""

from __future__ import annotations

import math

import torch

from ..families import VAE

__all__ = ["grid_log_px"]


def _log_joint_grid(model: VAE, x: torch.Tensor, axes: list[torch.Tensor], chunk: int) -> torch.Tensor:
    grid = torch.cartesian_prod(*axes)  # [n*n, 2]
    parts = [model.log_joint(x, c.float().unsqueeze(1)).double()[:, 0] for c in grid.split(chunk)]  # z [c, 1, 2]
    return torch.cat(parts).reshape(len(axes[0]), len(axes[1]))  # [n, n]


def _midpoints(lo: float, hi: float, n: int) -> torch.Tensor:
    return lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n


@torch.no_grad()
def grid_log_px(
    model: VAE,
    x: torch.Tensor,
    *,
    n: int = 200,
    window: float = 6.0,
    coarse: int = 200,
    keep_nats: float = 30.0,
    expand: float = 1.0,
    chunk: int = 20_000,
) -> torch.Tensor:
    """``x`` ``[B, 784]`` binary -> ``[B]`` float64 log p(x), for a one-layer model with ``latent == 2``.

    ``window``: half-width of the coarse search square around 0 (prior units); ``coarse``: its points
    per axis; ``keep_nats``: cells within this of the largest log-joint bound the fine square;
    ``expand``: factor by which that square is widened about its centre; ``n``: fine points per axis.
    """
    if model.config.layers != 1 or model.config.latent != 2:
        raise ValueError("grid quadrature needs a one-layer model with a 2-D latent")
    out = torch.empty(x.shape[0], dtype=torch.float64)
    coarse_axis = _midpoints(-window, window, coarse)
    step = 2 * window / coarse
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        lj = _log_joint_grid(model, xb, [coarse_axis, coarse_axis], chunk)  # [coarse, coarse]
        rows, cols = torch.nonzero(lj > lj.max() - keep_nats, as_tuple=True)
        bounds = []
        for idx in (rows, cols):
            lo, hi = coarse_axis[idx.min()] - 2 * step, coarse_axis[idx.max()] + 2 * step
            centre, half = (lo + hi) / 2, expand * (hi - lo) / 2
            bounds.append((float(centre - half), float(centre + half)))
        axes = [_midpoints(lo, hi, n) for lo, hi in bounds]
        log_area = sum(math.log((hi - lo) / n) for lo, hi in bounds)
        out[b] = torch.logsumexp(_log_joint_grid(model, xb, axes, chunk).reshape(-1), dim=0) + log_area
    return out
