"""One inference thread per device, fed by a bounded queue; the event loop never runs model work.

A request's work is either a callable taking a ``TaskContext`` or a ``BatchItem``: the three steps of
an evidence request (draw its own noise, run the model, estimate on its columns). Work runs under
``torch.no_grad`` (a sampler may turn gradients back on: AIS needs them) and calls ``ctx.check()`` between chunks, which raises once the deadline has
passed or the client has gone, so that abandoned work stops at the next chunk.

Dynamic batching (``batch_max_inputs > 0``): queued ``BatchItem``s with the same key (model and
estimator) are coalesced into one forward pass: those already queued, then any arriving within
``batch_delay_s``.
Each request draws its noise from its own seeded generator, so its draws are those it gets alone; the
forward pass over a larger batch may round the log-weights differently in the last float32 bit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from logpx.runtime import adopt_thread_budget

from .errors import ClientDisconnected, DeadlineExceeded, ServerSaturated

__all__ = ["BatchItem", "DeviceWorker", "TaskContext", "TaskResult", "finish_batch"]

T = TypeVar("T")
DISCONNECT_POLL_S = 0.25  # how often a waiting request asks whether its client is still there
# The current request's "has the client gone?" check; set by logpx.app.deps for every inference request.
client_gone: ContextVar[Callable[[], Awaitable[bool]] | None] = ContextVar("client_gone", default=None)
E = TypeVar("E")
log = logging.getLogger("logpx")


class _Cancelled(Exception):
    pass


@dataclass
class TaskContext:
    deadline: float  # time.monotonic() after which the work stops
    future: asyncio.Future[Any]
    # Background work only: runs the requests waiting now, between two of this work's chunks. The time it
    # takes is not this work's, so it moves the deadline on by as much.
    between: Callable[[], None] | None = None

    def check(self) -> None:
        if self.between is not None:
            started = time.monotonic()
            self.between()
            self.deadline += time.monotonic() - started
        if self.future.cancelled():
            raise _Cancelled
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded("the request passed its compute deadline and was stopped", field="deadline_s")


@dataclass
class TaskResult(Generic[T]):
    value: T
    queue_s: float
    compute_s: float


@dataclass
class BatchItem(Generic[E, T]):
    """An evidence request split so that several can share one forward pass.

    ``prepare()`` returns the request's inputs (on the device) and its noise (``sample_noise``);
    ``forward(x, noise, check)`` runs the model on a (possibly combined) batch and returns ``[k, B]``;
    ``estimate(log_w)`` turns ``[k, B]`` log-weights into estimates for those B columns, and
    ``finish(estimates, columns)`` the request's own ``columns`` of them into its result. Each column's
    estimate depends on that column alone (no random draws), so one ``estimate`` call serves the whole
    batch.
    """

    key: Hashable
    size: int
    prepare: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    forward: Callable[[torch.Tensor, torch.Tensor, Callable[[], None]], torch.Tensor]
    estimate: Callable[[torch.Tensor, Callable[[], None]], E]
    finish: Callable[[E, slice], T]


@dataclass
class _Task:
    work: Callable[[TaskContext], Any] | BatchItem[Any, Any]
    ctx: TaskContext
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)
    counted: bool = True  # holds a place in queue_depth until the worker takes it or its client leaves


class _Wake:
    """Put on the queue to wake a waiting worker for background work."""


_WAKE = _Wake()


class DeviceWorker:
    """Runs work one at a time on one device: interactive requests in submission order, and background
    work (evaluation jobs' chunks) only when no request is waiting, so that requests wait at most for the
    one chunk that is running."""

    def __init__(
        self,
        device: str,
        queue_depth: int,
        retry_after_s: int,
        *,
        batch_max_inputs: int = 0,
        batch_delay_s: float = 0.0,
        on_forward: Callable[[int, int], None] | None = None,
    ) -> None:
        self.device = device
        self.retry_after_s = retry_after_s
        self.batch_max_inputs = batch_max_inputs
        self.batch_delay_s = batch_delay_s
        # Requests waiting are counted apart from the queue, which also carries wake-up markers for background
        # work: a marker must never take a request's place (queue_depth counts requests only).
        self.queue_depth = queue_depth
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._queue: queue.Queue[_Task | _Wake | None] = queue.Queue()
        self._backlog: deque[_Task | _Wake | None] = deque()  # taken from the queue while batching, not yet run
        self._background: deque[_Task] = deque()
        self._on_forward = on_forward  # (requests, inputs) per forward pass, for metrics
        self._thread = threading.Thread(target=self._run, name=f"logpx-worker-{device}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def depth(self) -> int:
        """Requests waiting for the worker."""
        return self._waiting

    async def submit(self, work: Callable[[TaskContext], T] | BatchItem[Any, T], deadline_s: float) -> TaskResult[T]:
        """Queue ``work`` and wait for it. While waiting, the client's connection is watched (through
        ``client_gone``, set per request by ``logpx.app.deps``): a client that has left has its task cancelled,
        so that it is dropped from the queue, or stops at its next check if it is running."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TaskResult[T]] = loop.create_future()
        task = _Task(work, TaskContext(time.monotonic() + deadline_s, future), loop)
        with self._waiting_lock:
            if self._waiting >= self.queue_depth:
                raise ServerSaturated(
                    f"the {self.device} queue is full ({self.queue_depth} requests waiting); retry later",
                    field="queue_depth",
                    limit=self.queue_depth,
                    headers={"Retry-After": str(self.retry_after_s)},
                )
            self._waiting += 1
        self._queue.put_nowait(task)
        gone = client_gone.get()
        if gone is None:
            return await future
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
            if done:
                return future.result()
            if await gone():
                future.cancel()
                self._release(task)  # its place goes to the next request now, not when the worker reaches it
                raise ClientDisconnected("the client closed the connection; its work was stopped")

    async def submit_background(self, work: Callable[[TaskContext], T], deadline_s: float) -> TaskResult[T]:
        """Run ``work`` when no interactive request is waiting; requests that arrive while it runs are run
        at its next ``ctx.check()`` (between its chunks of samples, AIS temperatures, estimator steps), so
        that they wait for a piece of the work, not the whole of it. Not bounded by ``queue_depth``: each
        job runner has one piece of work here at a time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TaskResult[T]] = loop.create_future()
        ctx = TaskContext(time.monotonic() + deadline_s, future, between=self._serve_waiting)
        self._background.append(_Task(work, ctx, loop))
        self._queue.put_nowait(_WAKE)
        return await future

    def _take(self, block: bool = True, timeout: float | None = None) -> _Task | _Wake | None:
        """The next item of the queue (``queue.Empty`` if none comes); a request taken no longer waits."""
        item = self._queue.get(block, timeout)
        if isinstance(item, _Task):
            self._release(item)
        return item

    def _release(self, task: _Task) -> None:
        """``task`` no longer waits: its place in ``queue_depth`` is free (once, whoever releases it first)."""
        with self._waiting_lock:
            if task.counted:
                task.counted = False
                self._waiting -= 1

    def _next(self, timeout: float | None = None, *, background: bool = False) -> _Task | _Wake | None:
        if self._backlog:
            return self._backlog.popleft()
        if background and self._background:
            try:
                return self._take(block=False)
            except queue.Empty:
                return self._background.popleft()
        return self._take(timeout=timeout)

    def _serve_waiting(self) -> None:
        """Run every interactive request waiting now (on the worker thread, inside background work)."""
        while True:
            if self._backlog:
                task = self._backlog.popleft()
            else:
                try:
                    task = self._take(block=False)
                except queue.Empty:
                    return
            if task is None:  # stop: after the background work in hand
                self._backlog.appendleft(task)
                return
            if isinstance(task, _Wake):
                continue
            self._dispatch(task)

    def _dispatch(self, task: _Task) -> None:
        if isinstance(task.work, BatchItem):
            self._run_batch(self._collect(task) if self.batch_max_inputs else [task])
        else:
            self._run_one(task)

    def _collect(self, first: _Task) -> list[_Task]:
        """``first`` and the queued tasks that may share its forward pass, in arrival order: whatever is
        already queued, then what arrives within ``batch_delay_s`` of now. Under load the queue fills
        while a pass runs, so batches grow with the load even with no delay at all."""
        assert isinstance(first.work, BatchItem)
        group, total = [first], first.work.size
        until = time.monotonic() + self.batch_delay_s
        while total < self.batch_max_inputs:
            try:
                task = self._next(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if (
                isinstance(task, _Task)
                and isinstance(task.work, BatchItem)
                and task.work.key == first.work.key
                and total + task.work.size <= self.batch_max_inputs
            ):
                group.append(task)
                total += task.work.size
            else:
                self._backlog.append(task)  # runs next, in order
                break
        return group

    def _run(self) -> None:
        adopt_thread_budget()  # this thread's BLAS obeys the budget too, not only torch's own kernels
        while True:
            task = self._next(background=True)
            if task is None:
                return
            if isinstance(task, _Wake):
                continue
            self._dispatch(task)

    def _run_one(self, task: _Task) -> None:
        started = time.monotonic()
        try:
            task.ctx.check()
            with torch.no_grad():
                value = task.work(task.ctx)  # type: ignore[operator]
            outcome: tuple[str, Any] = (
                "result",
                TaskResult(value, started - task.enqueued, time.monotonic() - started),
            )
        except _Cancelled:
            return
        except BaseException as exc:  # delivered to the awaiting request, which maps it to a response
            outcome = ("error", exc)
        task.loop.call_soon_threadsafe(_settle, task.ctx.future, outcome)

    def _run_batch(self, group: list[_Task]) -> None:
        started = time.monotonic()
        live = [j for j in group if not j.ctx.future.cancelled()]

        def check() -> None:
            # Each request keeps its own deadline: the shared work goes on while any batch-mate still
            # has time and a client; it stops when none has. Those whose deadline passed get their 504
            # at the end (below), the others their answers.
            waiting = [j for j in live if not j.ctx.future.cancelled()]
            if not waiting:
                raise _Cancelled
            max(waiting, key=lambda j: j.ctx.deadline).ctx.check()

        outcomes: list[tuple[str, Any]]
        try:
            if not live:
                return
            check()
            with torch.no_grad():
                prepared = [j.work.prepare() for j in live]  # type: ignore[union-attr]
                x = torch.cat([p[0] for p in prepared])
                noise = torch.cat([p[1] for p in prepared], dim=1)
                log_w = live[0].work.forward(x, noise, check)  # type: ignore[union-attr]
                if self._on_forward is not None:
                    self._on_forward(len(live), x.shape[0])
                outcomes = finish_batch([j.work for j in live], log_w, check)  # type: ignore[misc]
        except _Cancelled:
            return
        except BaseException as exc:
            outcomes = [("error", exc)] * len(live)
        compute_s = time.monotonic() - started
        for j, (kind, value) in zip(live, outcomes):
            outcome = (kind, TaskResult(value, started - j.enqueued, compute_s)) if kind == "result" else (kind, value)
            if kind == "result" and time.monotonic() > j.ctx.deadline:
                outcome = ("error", DeadlineExceeded("the request passed its compute deadline", field="deadline_s"))
            j.loop.call_soon_threadsafe(_settle, j.ctx.future, outcome)


def finish_batch(
    items: list[BatchItem[Any, Any]], log_w: torch.Tensor, check: Callable[[], None] = lambda: None
) -> list[tuple[str, Any]]:
    """Each request's outcome, ``("result", value)`` or ``("error", exception)``, from the combined
    ``[k, B]`` log-weights, in order. A failure of the shared estimate falls back to one estimate per
    request, so that one request's bad columns fail only that request."""
    bounds = [0]
    for item in items:
        bounds.append(bounds[-1] + item.size)
    shared = None
    if len(items) > 1:
        try:
            shared = items[0].estimate(log_w, check)
        except Exception:
            log.warning("shared estimate failed; estimating per request", exc_info=True)
    outcomes: list[tuple[str, Any]] = []
    for item, start, stop in zip(items, bounds[:-1], bounds[1:]):
        try:
            if shared is not None:
                outcomes.append(("result", item.finish(shared, slice(start, stop))))
            else:
                outcomes.append(
                    ("result", item.finish(item.estimate(log_w[:, start:stop], check), slice(0, item.size)))
                )
        except BaseException as exc:
            outcomes.append(("error", exc))
    return outcomes


def _settle(future: asyncio.Future[Any], outcome: tuple[str, Any]) -> None:
    if future.cancelled():
        return
    kind, value = outcome
    if kind == "result":
        future.set_result(value)
    else:
        future.set_exception(value)
