"""One inference thread per device, fed by a bounded queue; the event loop never runs model work.

A request's work is a callable taking a ``JobContext``; it runs under ``torch.inference_mode`` and calls
``ctx.check()`` between chunks, which raises once the deadline has passed or the client has gone, so
that abandoned work stops at the next chunk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from .errors import DeadlineExceeded, ServerSaturated

__all__ = ["JobContext", "DeviceWorker", "JobResult"]

T = TypeVar("T")
log = logging.getLogger("logpx")


class _Cancelled(Exception):
    pass


@dataclass
class JobContext:
    deadline: float  # time.monotonic() after which the work stops
    future: asyncio.Future[Any]

    def check(self) -> None:
        if self.future.cancelled():
            raise _Cancelled
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded("the request passed its compute deadline and was stopped", field="deadline_s")


@dataclass
class JobResult(Generic[T]):
    value: T
    queue_s: float
    compute_s: float


@dataclass
class _Job:
    fn: Callable[[JobContext], Any]
    ctx: JobContext
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)


class DeviceWorker:
    """Runs jobs one at a time on one device, in submission order."""

    def __init__(self, device: str, queue_depth: int, retry_after_s: int, on_done: Callable[[float, float], None] | None = None) -> None:
        self.device = device
        self.retry_after_s = retry_after_s
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_depth)
        self._thread = threading.Thread(target=self._run, name=f"logpx-worker-{device}", daemon=True)
        self._on_done = on_done
        self.busy = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, fn: Callable[[JobContext], T], deadline_s: float) -> JobResult[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobResult[T]] = loop.create_future()
        job = _Job(fn, JobContext(time.monotonic() + deadline_s, future), loop)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ServerSaturated(
                f"the {self.device} queue is full ({self._queue.maxsize} requests waiting); retry later",
                field="queue_depth", limit=self._queue.maxsize, headers={"Retry-After": str(self.retry_after_s)},
            ) from None
        return await future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            started = time.monotonic()
            queue_s = started - job.enqueued
            self.busy = True
            try:
                job.ctx.check()
                with torch.inference_mode():
                    value = job.fn(job.ctx)
                result: Any = JobResult(value, queue_s, time.monotonic() - started)
                outcome = ("result", result)
            except _Cancelled:
                continue
            except BaseException as exc:  # delivered to the awaiting request, which maps it to a response
                outcome = ("error", exc)
            finally:
                self.busy = False
            if self._on_done is not None:
                self._on_done(queue_s, time.monotonic() - started)
            job.loop.call_soon_threadsafe(_settle, job.ctx.future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[str, Any]) -> None:
    if future.cancelled():
        return
    kind, value = outcome
    if kind == "result":
        future.set_result(value)
    else:
        future.set_exception(value)
