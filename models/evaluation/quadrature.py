"""log p(x) of a 2-D-latent model by integration on a grid: the ground truth for estimator checks.

p(x) = integral p(x, z) dz over z in R^2, by the midpoint rule in log space:
log p(x) ~= logsumexp_g log p(x, z_g) + log(cell area). The midpoint rule converges exponentially
fast for smooth, rapidly decaying integrands once the spacing resolves the posterior, so the work goes
into finding where the posterior is: a coarse grid over the prior's bulk (the window) locates every
cell within ``keep_nats`` of the largest log-joint, whatever the encoder believes, and a fine grid over
that region, widened by ``expand``, integrates. Checking convergence in resolution (``n``) and window
(``expand``) is the caller's (see tests/models/evaluation/test_quadrature.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..estimators import Level, Verdict
from ..families import VAE, LatentVariableModel

__all__ = ["EDGE_MASS_LIMIT", "PosteriorGrid", "grid_log_px", "grid_verdict", "posterior_grid"]

# Mass beyond the grid is at most of the order of the mass in its outer ring (the posterior decays outward):
# below 1e-4 the truncation costs under 1e-4 nats of log p(x).
EDGE_MASS_LIMIT = 1e-4


def _log_joint_grid(model: LatentVariableModel, x: torch.Tensor, axes: list[torch.Tensor], chunk: int) -> torch.Tensor:
    grid = torch.cartesian_prod(*axes).to(x.device)  # [n*n, 2]
    parts = [
        model.log_joint(x, c.to(x.dtype).unsqueeze(1)).double()[:, 0].cpu() for c in grid.split(chunk)
    ]  # z [c, 1, 2]
    return torch.cat(parts).reshape(len(axes[0]), len(axes[1]))  # [n, n]


def _midpoints(lo: float, hi: float, n: int) -> torch.Tensor:
    return lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n


def _where_the_mass_is(
    model: LatentVariableModel, x: torch.Tensor, window: float, coarse: int, keep_nats: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)`` ``[2]`` each: the extent of the coarse cells (``coarse`` per axis over +-``window``) whose
    log-joint is within ``keep_nats`` of the largest, wherever the encoder believes the posterior is."""
    axis = _midpoints(-window, window, coarse)
    lj = _log_joint_grid(model, x, [axis, axis], chunk)
    rows, cols = torch.nonzero(lj > lj.max() - keep_nats, as_tuple=True)
    return torch.stack([axis[rows.min()], axis[cols.min()]]), torch.stack([axis[rows.max()], axis[cols.max()]])


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
    step = 2 * window / coarse
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        bounds = []
        for lo, hi in zip(*_where_the_mass_is(model, xb, window, coarse, keep_nats, chunk)):
            lo, hi = float(lo) - 2 * step, float(hi) + 2 * step
            centre, half = (lo + hi) / 2, expand * (hi - lo) / 2
            bounds.append((centre - half, centre + half))
        axes = [_midpoints(lo, hi, n) for lo, hi in bounds]
        log_area = sum(math.log((hi - lo) / n) for lo, hi in bounds)
        out[b] = torch.logsumexp(_log_joint_grid(model, xb, axes, chunk).reshape(-1), dim=0) + log_area
    return out


class PosteriorGrid(NamedTuple):
    """The posterior p(z | x) of one input on a grid over the region that holds it: ``z1``, ``z2`` ``[n]``
    the cell midpoints, ``log_density`` ``[n, n]`` (rows along z1) log p(z | x) = log p(x, z) - log p(x),
    ``log_px`` the midpoint-rule evidence on this grid, and q(z | x)'s ``q_mean`` ``[2]`` and ``q_cov``
    ``[2, 2]`` from ``samples`` draws (any family's q, not only a Gaussian one's parameters)."""

    z1: torch.Tensor
    z2: torch.Tensor
    log_density: torch.Tensor
    log_px: float
    q_mean: torch.Tensor
    q_cov: torch.Tensor
    edge_mass: float  # posterior mass in the grid's outermost ring of cells: near 0 when the grid holds it all


@torch.no_grad()
def posterior_grid(
    model: LatentVariableModel,
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    n: int = 80,
    window: float = 6.0,
    coarse: int = 120,
    keep_nats: float = 20.0,
    samples: int = 4096,
    chunk: int = 20_000,
) -> PosteriorGrid:
    """``x`` ``[1, input_dim]`` of a model with a 2-D latent. The square is found as in ``grid_log_px``
    (cells within ``keep_nats`` of the largest log-joint on a coarse grid over +-``window``), then made
    square about its centre so that the picture keeps the latent plane's aspect, and widened to hold q's
    3-sigma box too, so that a q far from the posterior is drawn where it is."""
    if model.latent_dim != 2:
        raise ValueError(f"the posterior grid needs a 2-D latent, this model's has {model.latent_dim}")
    noise = torch.randn(samples, 1, 2, generator=generator, device=generator.device)
    z = model.sample_q(x, noise)[:, 0].double().cpu()  # [S, 2]
    q_mean, q_cov = z.mean(0), torch.cov(z.T)
    mass_lo, mass_hi = _where_the_mass_is(model, x, window, coarse, keep_nats, chunk)
    q_half = 3 * q_cov.diagonal().sqrt()
    lo, hi = torch.minimum(mass_lo, q_mean - q_half), torch.maximum(mass_hi, q_mean + q_half)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * 1.1
    axes = [_midpoints(float(c) - half, float(c) + half, n) for c in centre]
    log_joint = _log_joint_grid(model, x, axes, chunk)
    log_px = float(torch.logsumexp(log_joint.reshape(-1), dim=0)) + 2 * math.log(2 * half / n)
    density = (log_joint - log_px).exp() * (2 * half / n) ** 2  # each cell's share of the mass
    edge_mass = max(0.0, float(density.sum() - density[1:-1, 1:-1].sum()))  # not below 0 by round-off
    return PosteriorGrid(axes[0], axes[1], log_joint - log_px, log_px, q_mean, q_cov, edge_mass)


def grid_verdict(grid: PosteriorGrid) -> Verdict:
    """Whether the grid holds the posterior: ``log_px`` misses the mass beyond it."""
    if grid.edge_mass <= EDGE_MASS_LIMIT:
        return Verdict(Level.RELIABLE, (), "")
    return Verdict(
        Level.CAUTION,
        (f"{grid.edge_mass:.2g} of the posterior mass lies in the grid's outer ring (limit {EDGE_MASS_LIMIT:g})",),
        "the posterior reaches the edge of the picture: log_px misses the mass beyond it",
    )
