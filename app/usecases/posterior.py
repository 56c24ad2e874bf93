"""The posterior of one input of a 2-D latent model on a grid, with q(z | x)'s moments (the page's picture)."""

from __future__ import annotations

import time

import torch

from logpx.evaluation import grid_verdict, posterior_grid

from .. import presenter
from ..config import Settings
from ..errors import WrongModelFamily
from ..inputs import apply_binarization, plan_binarization
from ..registry import ModelEntry
from ..schemas import PosteriorRequest, PosteriorResponse
from ..worker import DeviceWorker, TaskContext
from . import latent_model, request_generator, timing

__all__ = ["posterior"]


async def posterior(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, req: PosteriorRequest
) -> PosteriorResponse:
    started = time.monotonic()
    model = latent_model(entry)
    if model.latent_dim != 2:
        raise WrongModelFamily(
            f"model {entry.name!r} has a {model.latent_dim}-D latent; the posterior picture needs a 2-D one",
            field="name",
            limit="latent_dim 2",
        )
    generator = request_generator(entry, req.seed)
    binarization = plan_binarization(x, model.likelihood, req.binarize, req.seed, entry.binarize, entry.binarize_seed)

    def work(ctx: TaskContext) -> PosteriorResponse:
        grid = posterior_grid(
            model, apply_binarization(x, binarization, generator).to(entry.device), generator, n=req.grid
        )
        return PosteriorResponse(
            model=entry.name,
            binarization=binarization,
            z1=grid.z1.tolist(),
            z2=grid.z2.tolist(),
            log_density=grid.log_density.clamp(min=-1e4).tolist(),  # JSON has no -inf; e^-10000 is 0 anyway
            log_px=grid.log_px,
            q_mean=grid.q_mean.tolist(),
            q_cov=grid.q_cov.tolist(),
            edge_mass=grid.edge_mass,
            verdict=presenter.verdict_out(grid_verdict(grid), presenter.Advising(entry.name)),
            timing=presenter.ZERO_TIMING,
        )

    result = await worker.submit(work, settings.deadline_s)
    return result.value.model_copy(update={"timing": timing(result, started)})
