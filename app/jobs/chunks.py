"""One chunk of a job: ``run_plan`` on a slice of its data set, one row per input, whichever executor runs it
(``executors.py``: the server's device worker or a Ray actor). Chunk c draws from its own generator seeded by
(seed, c), so its rows never depend on where, when or after what it ran."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from logpx.certificate import Certificate
from logpx.plan import Plan
from logpx.samplers import run_plan, stream_seed

from .. import presenter
from ..config import Settings
from ..inputs import apply_binarization
from ..registry import ModelEntry
from ..schemas import Binarization
from ..usecases import latent_model, request_generator, units_of
from ..worker import TaskContext
from .store import JobRow

__all__ = ["chunk_seed", "chunk_work"]


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk ``chunk``'s generator seed: its own stream of the job's seed (``logpx.samplers.stream_seed``), so
    that no chunk's draws depend on how many came before it ran."""
    return stream_seed(seed, chunk)


def chunk_work(
    entry: ModelEntry,
    settings: Settings,
    job: JobRow,
    plan: Plan,
    x: np.ndarray,
    labels: np.ndarray | None,
    start: int,
    certificates: Sequence[Certificate] = (),
) -> Callable[[TaskContext], list[dict[str, Any]]]:
    """The worker's task for the chunk of ``job`` beginning at input ``start``: ``run_plan`` on the slice,
    one row per input. An input whose estimate fails (a model that is not finite there) fails alone."""
    stop = min(start + job.chunk_size, job.total)
    binarization = Binarization.model_validate(job.request["binarization"])
    model = latent_model(entry)
    names = [str(e) for e in plan.entries]
    # Rows are results, the same on any replica and after any restart: their advice names the model and the
    # plan to run (within the limits), never a time measured on this machine.
    advice = presenter.Advising(entry.name, settings=settings)
    units = units_of(entry)

    def work(ctx: TaskContext) -> list[dict[str, Any]]:
        generator = request_generator(entry, chunk_seed(job.request["options"]["seed"], start // job.chunk_size))
        # A copy: on a Ray actor the data set is a read-only view of the object store, which torch will not wrap.
        xd = apply_binarization(torch.tensor(x[start:stop]), binarization, generator).to(entry.device)
        outcomes = run_plan(
            model, xd, plan, generator, max_elements=settings.max_elements, check=ctx.check, certificates=certificates
        )
        per_entry = [presenter.input_estimates(o, advice, with_diagnostics=True, units=units) for o in outcomes]
        return [
            {
                "index": start + i,
                "label": int(labels[start + i]) if labels is not None else None,
                "estimates": [
                    {"estimator": name, **column[i].model_dump(mode="json", exclude_none=True)}
                    for name, column in zip(names, per_entry, strict=True)
                ],
            }
            for i in range(stop - start)
        ]

    return work
