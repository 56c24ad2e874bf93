"""Where a job's chunks run: in this server process, on its device worker below interactive requests
(``InProcess``, the default), or on a Ray cluster (``RayExecutor``, ``LOGPX_RAY_ADDRESS``; ``logpx[ray]``).

Either way a chunk is ``chunk_work`` on the same arguments: its rows depend on (seed, chunk) alone, so where it
ran never changes them. The runner keeps ``parallelism`` chunks in flight and commits them in order, so the
store, not Ray's object store, holds the results, and a job resumed anywhere starts after its last commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from logpx.certificate import Certificate
from logpx.io import load_checkpoint
from logpx.plan import Plan
from logpx.runtime import adopt_thread_budget, set_thread_budget

from ..config import Settings
from ..registry import ModelEntry
from ..worker import DeviceWorker
from .chunks import chunk_work
from .store import JobRow

__all__ = ["ChunkResult", "Executor", "InProcess", "RayExecutor", "make_executor"]

log = logging.getLogger("logpx")
RAY_RETRIES = 3  # the runner's own re-dispatches of a chunk whose actor died past Ray's task retries


class ChunkResult(NamedTuple):
    """A chunk's rows and where it ran: ``executor``, ``node``, ``host``, ``device`` and ``seconds``."""

    rows: list[dict[str, Any]]
    provenance: dict[str, Any]


class Executor(Protocol):
    kind: str
    parallelism: int  # chunks the runner keeps in flight

    async def run(
        self,
        entry: ModelEntry,
        job: JobRow,
        plan: Plan,
        x: np.ndarray,
        labels: np.ndarray | None,
        start: int,
        certificates: Sequence[Certificate],
    ) -> ChunkResult: ...

    def forget(self, job: JobRow) -> None: ...

    def close(self) -> None: ...


class _NoCheck:
    """A chunk's context where nothing can stop it midway (a Ray actor: cancelling drops its result)."""

    @staticmethod
    def check() -> None:
        return None


class InProcess:
    """Chunks on this process's device worker, one at a time, below interactive requests."""

    kind = "in-process"
    parallelism = 1

    def __init__(self, worker: DeviceWorker, settings: Settings) -> None:
        self.worker, self.settings = worker, settings
        self.host = socket.gethostname()

    async def run(
        self,
        entry: ModelEntry,
        job: JobRow,
        plan: Plan,
        x: np.ndarray,
        labels: np.ndarray | None,
        start: int,
        certificates: Sequence[Certificate],
    ) -> ChunkResult:
        work = chunk_work(entry, self.settings, job, plan, x, labels, start, certificates)
        result = await self.worker.submit_background(work, self.settings.deadline_s)
        provenance = {"executor": self.kind, "node": None, "host": self.host, "device": entry.device}
        return ChunkResult(result.value, provenance | {"seconds": round(result.compute_s, 3)})

    def forget(self, job: JobRow) -> None:
        return None

    def close(self) -> None:
        return None


class ChunkActor:
    """A Ray actor holding one model on its device: it runs chunks of that model's jobs. Created by
    ``RayExecutor`` with the checkpoint's bytes from the object store (once per actor)."""

    def __init__(self, name: str, checkpoint: bytes, device: str, threads: int) -> None:
        import ray

        set_thread_budget(threads)  # AIS's few-chain rule (threads_for_rows) works within it, as in the server
        with tempfile.TemporaryDirectory(prefix="logpx-actor-") as d:  # safetensors loads from a file
            path = Path(d) / f"{name}.safetensors"
            path.write_bytes(checkpoint)
            loaded = load_checkpoint(path, device)
        self.entry = ModelEntry(name, None, device, "ready", None, loaded, None)
        self.node = ray.get_runtime_context().get_node_id()
        self.host = socket.gethostname()

    def run(
        self,
        settings: Settings,
        job: JobRow,
        plan_text: str,
        x: np.ndarray,
        labels: np.ndarray | None,
        start: int,
        certificates: list[Certificate],
    ) -> ChunkResult:
        adopt_thread_budget()  # in the thread Ray runs this call on: MKL keeps its thread count per thread
        started = time.monotonic()
        work = chunk_work(self.entry, settings, job, Plan.parse(plan_text), x, labels, start, certificates)
        rows = work(_NoCheck())  # type: ignore[arg-type]
        provenance = {"executor": "ray", "node": self.node, "host": self.host, "device": self.entry.device}
        return ChunkResult(rows, provenance | {"seconds": round(time.monotonic() - started, 3), "pid": os.getpid()})


class RayExecutor:
    """Chunks on a pool of Ray actors per model (``LOGPX_RAY_ACTORS``, default one per GPU of the cluster, else
    one per CPU), each fed a chunk as it frees up. A job's data set goes to the object store once per run of the
    job and reaches every actor as a reference; an actor that dies is restarted by Ray (on another node if its
    node died) and its chunk retried, then re-dispatched by this executor up to ``RAY_RETRIES`` times."""

    kind = "ray"

    def __init__(self, settings: Settings) -> None:
        import ray

        self.ray, self.settings = ray, settings
        address = settings.ray_address
        if address == "local":  # a cluster of this machine's CPUs, started and stopped with the server
            ray.init(num_cpus=settings.ray_actors or None, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, namespace="logpx")
        self._size()
        self._pools: dict[tuple[str, str], asyncio.Queue[Any]] = {}
        self._blobs: dict[tuple[str, str], Any] = {}  # checkpoint references, held: a restarted actor reads them again
        self._data: dict[str, tuple[Any, Any]] = {}  # job id -> (x, labels) references
        self._actor_cls = ray.remote(ChunkActor)
        log.info("jobs run on Ray at %s: %d actors (%d GPUs) per model", address, self.parallelism, self.gpus)

    def _size(self) -> None:
        """The pool size from the cluster as it is now: asked again for each new pool, because workers that
        join after the service (compose and KubeRay start them together) should get actors too."""
        resources = self.ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = resources.get("CPU", 1) / (1 if self.gpus else self.settings.ray_actor_cpus)
        self.parallelism = self.settings.ray_actors or (self.gpus or max(1, int(cpus)))

    def _pool(self, entry: ModelEntry) -> asyncio.Queue[Any]:
        assert entry.checkpoint is not None and entry.checkpoint.path is not None
        key = (entry.name, entry.checkpoint.sha256)
        if key not in self._pools:
            self._size()
            blob = self._blobs[key] = self.ray.put(Path(entry.checkpoint.path).read_bytes())
            # Spread over the nodes; an actor that dies is restarted wherever its resources are free.
            options: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 2, "scheduling_strategy": "SPREAD"}
            options |= {"num_gpus": 1, "num_cpus": 0} if self.gpus else {"num_cpus": self.settings.ray_actor_cpus}
            device = "cuda" if self.gpus else "cpu"
            pool: asyncio.Queue[Any] = asyncio.Queue()
            for _ in range(self.parallelism):
                pool.put_nowait(
                    self._actor_cls.options(**options).remote(entry.name, blob, device, self.settings.ray_actor_threads)
                )
            self._pools[key] = pool
        return self._pools[key]

    def _dataset(self, job: JobRow, x: np.ndarray, labels: np.ndarray | None) -> tuple[Any, Any]:
        if job.id not in self._data:
            self._data[job.id] = (self.ray.put(x), self.ray.put(labels))
        return self._data[job.id]

    async def run(
        self,
        entry: ModelEntry,
        job: JobRow,
        plan: Plan,
        x: np.ndarray,
        labels: np.ndarray | None,
        start: int,
        certificates: Sequence[Certificate],
    ) -> ChunkResult:
        pool = self._pool(entry)
        x_ref, labels_ref = self._dataset(job, x, labels)
        actor = await pool.get()
        try:
            for attempt in range(RAY_RETRIES + 1):
                ref = actor.run.remote(self.settings, job, str(plan), x_ref, labels_ref, start, list(certificates))
                try:
                    result: ChunkResult = await ref
                    return result
                except asyncio.CancelledError:
                    self.ray.cancel(ref)  # a queued chunk never starts; a running one's result is dropped
                    raise
                except self.ray.exceptions.RayActorError:
                    if attempt == RAY_RETRIES:
                        raise
                    log.warning("job %s: chunk at %d lost its actor; dispatching it again", job.id, start)
            raise AssertionError("unreachable")
        finally:
            pool.put_nowait(actor)

    def forget(self, job: JobRow) -> None:
        self._data.pop(job.id, None)

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(worker: DeviceWorker, settings: Settings) -> Executor:
    """Ray when ``LOGPX_RAY_ADDRESS`` names a cluster, else this process."""
    if settings.ray_address is None:
        return InProcess(worker, settings)
    return RayExecutor(settings)
