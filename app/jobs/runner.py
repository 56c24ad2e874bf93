"""The job runner of one server process: claims a job's lease, has the job's chunks run by its executor (the
device worker below interactive requests, or Ray; ``executors.py``), and commits each chunk's rows with the
job's progress, in order. A chunk's rows are a function of the job's seed and the chunk (``chunks.py``): a job
resumed after a crash, by this process or another replica, computes exactly the rows an uninterrupted run would
have."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from logpx.estimators import DatasetSummary, Level

from ..certifier import Certifier
from ..config import Settings
from ..errors import ModelNotFound, ModelNotReady, ProblemError
from ..metrics import Metrics
from ..registry import ModelRegistry
from ..worker import DeviceWorker
from .datasets import from_stored
from .executors import ChunkResult, Executor, InProcess
from .store import JobRow, JobStore

__all__ = ["JobRunner"]

log = logging.getLogger("logpx")
T = TypeVar("T")


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


# Pauses between attempts of a job-store write that failed (a full disk, a database failover, a lock held too
# long): about 15 s in all, a job's lease, before the job is failed with the store's reason.
STORE_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
OPENING = "the job store is opening"  # not ready yet: a store starting beside the service gets its wait
SWEEP_S = 60.0  # how often an idle runner looks for finished jobs past their retention


class StoreFailed(Exception):
    """A job-store call that failed on every retry; the message is the store's last reason."""


class _GaveUp(Exception):
    """Not even a job's failure could be recorded: the job is left to its lease."""


class JobRunner:
    """Runs one job at a time in this process; ``wake()`` after a job is created.

    It survives any error: a store write is retried with backoff, then the job fails with the store's
    reason; if even that cannot be written, the job's lease runs out and it is taken up again later, from
    its last committed chunk. ``health()`` says whether the runner is running and its store answering."""

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        worker: DeviceWorker,
        settings: Settings,
        metrics: Metrics | None = None,
        certifier: Certifier | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store, self.registry, self.worker, self.settings, self.metrics = store, registry, worker, settings, metrics
        self.certifier = certifier
        self.executor = executor or InProcess(worker, settings)
        self.replica = uuid.uuid4().hex  # this process, as lease holder
        self._wake = asyncio.Event()
        self._current: str | None = None
        self._running = False
        self._store_error: str | None = None  # the last store call's error, None once one succeeds
        self._swept = -float("inf")  # when finished jobs past their retention were last deleted
        self.backoff_s: tuple[float, ...] = STORE_BACKOFF_S

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> str | None:
        """None while the runner runs and its store answers; else what is wrong, in words."""
        if not self._running:
            return "the job runner is not running"
        if self._store_error is not None:
            return f"the job store is failing: {self._store_error}"
        return None

    def _store_ok(self) -> None:
        self._store_error = None
        if self.metrics is not None:
            self.metrics.job_runner_healthy.set(1)

    def _store_failed(self, exc: BaseException) -> None:
        self._store_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if self.metrics is not None:
            self.metrics.job_store_errors.inc()
            self.metrics.job_runner_healthy.set(0)

    async def _store(self, call: Callable[..., T], *args: Any, retry: bool = True) -> T:
        """A store call off the event loop, retried with backoff; ``StoreFailed`` after the last try."""
        pauses = self.backoff_s if retry else ()
        for pause in (*pauses, None):
            try:
                result = await asyncio.to_thread(call, *args)
            except Exception as exc:
                self._store_failed(exc)
                log.warning("job store: %s failed (%s)%s", call.__name__, exc, "" if pause is None else ", retrying")
                if pause is None:
                    raise StoreFailed(self._store_error) from exc
                await asyncio.sleep(pause)
            else:
                self._store_ok()
                return result
        raise AssertionError("unreachable")

    async def run_forever(self) -> None:
        self._running = True
        try:
            while not self.registry.loaded:  # a job's model must be known before its job can run or fail
                await asyncio.sleep(0.1)
            while True:
                try:
                    job = await self._store(self.store.claim_next, self.replica, self.settings.job_lease_s, retry=False)
                except StoreFailed:  # the database is away: keep serving requests, try again later
                    job = None
                if job is None:
                    await self._sweep()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_s)
                    continue
                self._current = job.id
                try:
                    await self._run(job)
                except asyncio.CancelledError:
                    raise
                except Exception:  # not even the failure could be written: the lease runs out, the job resumes
                    log.warning("job %s: left to its lease after store errors", job.id, exc_info=True)
                    await asyncio.sleep(self.backoff_s[-1] if self.backoff_s else 0)
                finally:
                    self._current = None
        finally:
            self._running = False
            if self.metrics is not None:
                self.metrics.job_runner_healthy.set(0)

    async def _sweep(self) -> None:
        """Delete finished jobs past ``LOGPX_JOB_RETENTION_S`` (with their rows and unused data sets), at most
        every ``SWEEP_S``, when there is nothing to run. A failure waits for the next sweep."""
        retention = self.settings.job_retention_s
        now = time.monotonic()
        if not retention or now - self._swept < SWEEP_S:
            return
        self._swept = now
        try:
            for job_id in await self._store(self.store.expired, time.time() - retention, retry=False):
                await self._store(self.store.delete, job_id, retry=False)
                log.info("job %s: deleted, %g s after it ended (LOGPX_JOB_RETENTION_S)", job_id, retention)
        except StoreFailed:
            pass

    async def stop(self) -> None:
        """Give back the lease of the job in hand, so that a restart or another replica takes it at once."""
        if self._current is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, self._current, self.replica)

    async def _fail(self, job: JobRow, reason: str) -> None:
        try:
            await self._store(self.store.finish, job.id, self.replica, "failed", reason)
        except StoreFailed as exc:
            raise _GaveUp(str(exc)) from exc

    async def _run(self, job: JobRow) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            try:
                entry = self.registry.get_ready(job.model)
            except (ModelNotFound, ModelNotReady) as exc:  # every checkpoint has been tried: this one is not served
                await self._fail(job, exc.detail)
                return
            x, labels = from_stored(*await self._store(self.store.dataset_bytes, job.dataset))
            plan = job.plan  # parsed once per run, not per chunk: it was checked when the job was accepted
            names = [str(e) for e in plan.entries]
            log.info("job %s: running from input %d of %d", job.id, job.done, job.total)
            known = self.certifier.known(entry) if self.certifier is not None else []
            # Chunks in flight, by first input: dispatched ahead up to the executor's parallelism, committed in
            # order (the store's progress is a prefix of the data set).
            pending: dict[int, asyncio.Task[ChunkResult]] = {}
            ahead = job.done
            started = time.monotonic()
            try:
                while job.done < job.total:
                    while len(pending) < self.executor.parallelism and ahead < job.total:
                        run = self.executor.run(entry, job, plan, x, labels, ahead, known)
                        pending[ahead] = asyncio.create_task(run)
                        ahead += job.chunk_size
                    chunk = await pending.pop(job.done)
                    rows = chunk.rows
                    summary = add_to_summary(job.summary, names, rows)
                    provenance = {"start": job.done, "count": len(rows), **chunk.provenance}
                    summary["provenance"] = [*job.summary.get("provenance", []), provenance]
                    now = time.monotonic()  # wall time between commits: with several actors, not their sum
                    args = (job, self.replica, job.done, rows, summary, now - started, self.settings.job_lease_s)
                    started = now
                    outcome = await self._store(self.store.commit_chunk, *args)
                    if outcome != "ok":
                        log.info("job %s: %s after input %d", job.id, outcome, job.done)
                        return
                    job = replace(job, done=job.done + len(rows), summary=summary)
            finally:
                for task in pending.values():  # cancelled, lost or failed: the chunks still out are dropped
                    task.cancel()
                self.executor.forget(job)
            log.info("job %s: succeeded", job.id)
        except _GaveUp:
            raise
        except StoreFailed as exc:
            await self._fail(job, f"the job store failed on every retry: {exc}")
        except ProblemError as exc:
            await self._fail(job, exc.detail)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed", job.id)
            await self._fail(job, "internal error while running; see the server log")
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease outlasts two
                await asyncio.to_thread(self.store.renew, job_id, self.replica, self.settings.job_lease_s)
