"""The job runner of one server process: claims a job's lease, runs the job chunk by chunk on the device
worker below interactive requests, and commits each chunk's rows with the job's progress.

Chunks are fixed when the job is created (``chunk_size``), and chunk c draws from its own generator seeded
by (seed, c): a job resumed after a crash, by this process or another replica, computes exactly the rows an
uninterrupted run would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from logpx.estimators import DatasetSummary, Level
from logpx.plan import Plan
from logpx.samplers import run_plan

from .. import presenter
from ..config import Settings
from ..errors import ModelNotFound, ModelNotReady, ProblemError
from ..inputs import apply_binarization
from ..registry import ModelEntry, ModelRegistry
from ..schemas import Binarization
from ..usecases import latent_model, request_generator
from ..worker import DeviceWorker, TaskContext
from .datasets import from_stored
from .store import JobRow, JobStore

__all__ = ["JobRunner", "chunk_seed"]

log = logging.getLogger("logpx")


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk ``chunk``'s generator seed: numpy's SeedSequence mixes (seed, chunk), so that chunks draw
    independent streams and no chunk's stream depends on how many came before it ran."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, np.uint64)[0] >> 1)


def chunk_work(
    entry: ModelEntry, settings: Settings, job: JobRow, plan: Plan, x: np.ndarray, labels: np.ndarray | None, start: int
) -> Callable[[TaskContext], list[dict[str, Any]]]:
    """The worker's task for the chunk of ``job`` beginning at input ``start``: ``run_plan`` on the slice,
    one row per input. An input whose estimate fails (a model that is not finite there) fails alone."""
    stop = min(start + job.chunk_size, job.total)
    binarization = Binarization.model_validate(job.request["binarization"])
    model = latent_model(entry)
    names = [str(e) for e in plan.entries]
    # Rows are results, the same on any replica and after any restart: their advice names the model and the
    # plan to run, never a time measured on this machine.
    advice = presenter.Advising(entry.name)

    def work(ctx: TaskContext) -> list[dict[str, Any]]:
        generator = request_generator(entry, chunk_seed(job.request["options"]["seed"], start // job.chunk_size))
        xd = apply_binarization(torch.from_numpy(x[start:stop]), binarization, generator).to(entry.device)
        outcomes = run_plan(model, xd, plan, generator, max_elements=settings.max_elements, check=ctx.check)
        per_entry = [presenter.input_estimates(o, advice, with_diagnostics=True) for o in outcomes]
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


def add_to_summary(summary: dict[str, Any], names: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's running summary with ``rows`` added: per estimator name, a ``DatasetSummary`` and the
    advice of the worst verdict seen so far (what to run instead)."""
    out = {}
    for i, name in enumerate(names):
        previous = summary.get(name, {})
        s = DatasetSummary.from_dict(previous["values"]) if previous else DatasetSummary()
        cells = [r["estimates"][i] for r in rows]
        s.add(
            [c.get("log_px") for c in cells],
            [c["verdict"]["level"] for c in cells],
            [c.get("diagnostics", {}).get("khat") for c in cells],
        )
        worst = previous.get("worst")
        for c in cells:
            if Level(c["verdict"]["level"]).rank > Level(worst["level"] if worst else Level.RELIABLE).rank:
                worst = {key: c["verdict"].get(key) for key in ("level", "advice", "rerun")}
        out[name] = {"values": s.to_dict(), "worst": worst}
    return out


class JobRunner:
    """Runs one job at a time in this process; ``wake()`` after a job is created."""

    def __init__(self, store: JobStore, registry: ModelRegistry, worker: DeviceWorker, settings: Settings) -> None:
        self.store, self.registry, self.worker, self.settings = store, registry, worker, settings
        self.replica = uuid.uuid4().hex  # this process, as lease holder
        self._wake = asyncio.Event()
        self._current: str | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while not self.registry.loaded:  # a job's model must be known before its job can run or fail
            await asyncio.sleep(0.1)
        while True:
            try:
                job = await asyncio.to_thread(self.store.claim_next, self.replica, self.settings.job_lease_s)
            except Exception:  # the database is away: keep serving requests, try again later
                log.exception("job store: claiming a job failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_s)
                continue
            self._current = job.id
            try:
                await self._run(job)
            finally:
                self._current = None

    async def stop(self) -> None:
        """Give back the lease of the job in hand, so that a restart or another replica takes it at once."""
        if self._current is not None:
            await asyncio.to_thread(self.store.release, self._current, self.replica)

    async def _run(self, job: JobRow) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            try:
                entry = self.registry.get_ready(job.model)
            except (ModelNotFound, ModelNotReady) as exc:  # every checkpoint has been tried: this one is not served
                await asyncio.to_thread(self.store.finish, job.id, self.replica, "failed", exc.detail)
                return
            x, labels = from_stored(*await asyncio.to_thread(self.store.dataset_bytes, job.dataset))
            plan = job.plan  # parsed once per run, not per chunk: it was checked when the job was accepted
            names = [str(e) for e in plan.entries]
            log.info("job %s: running from input %d of %d", job.id, job.done, job.total)
            while job.done < job.total:
                started = time.monotonic()
                work = chunk_work(entry, self.settings, job, plan, x, labels, job.done)
                rows = (await self.worker.submit_background(work, self.settings.deadline_s)).value
                summary = add_to_summary(job.summary, names, rows)
                outcome = await asyncio.to_thread(
                    self.store.commit_chunk,
                    job,
                    self.replica,
                    job.done,
                    rows,
                    summary,
                    time.monotonic() - started,
                    self.settings.job_lease_s,
                )
                if outcome != "ok":
                    log.info("job %s: %s after input %d", job.id, outcome, job.done)
                    return
                job = replace(job, done=job.done + len(rows), summary=summary)
            log.info("job %s: succeeded", job.id)
        except ProblemError as exc:
            await asyncio.to_thread(self.store.finish, job.id, self.replica, "failed", exc.detail)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed", job.id)
            await asyncio.to_thread(
                self.store.finish, job.id, self.replica, "failed", "internal error while running; see the server log"
            )
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease outlasts two
                await asyncio.to_thread(self.store.renew, job_id, self.replica, self.settings.job_lease_s)
