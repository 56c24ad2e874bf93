"""Process-wide settings for running models on a CPU, applied by the entry points (service, CLIs,
benchmarks), never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = [
    "CheckFn",
    "adopt_thread_budget",
    "cpu_limit",
    "keep_freed_memory",
    "resolve_device",
    "set_thread_budget",
    "thread_budget",
    "thread_text",
    "threads_for",
    "threads_for_rows",
]

# Called inside long loops (chunks over k, temperatures, leave-j-out chunks); raises to stop the work:
# a request's deadline, a job's cancellation.
CheckFn = Callable[[], None]


def resolve_device(name: str) -> str:
    """``auto`` is CUDA where there is a GPU, else the CPU; any other name is torch's."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_bytes: int = 1 << 30) -> bool:
    """Make glibc's allocator reuse freed blocks instead of unmapping them: blocks up to 32 MiB (the
    largest mmap threshold glibc accepts everywhere on 64-bit) come from the heap, and up to
    ``trim_bytes`` of free heap is kept rather than returned to the kernel.

    Every chunk over k allocates activations of a few to tens of MiB. By default glibc serves such
    blocks with mmap and returns them on free (or trims the heap), so each chunk page-faults its
    activations in again, and the kernel zeroes every page: ~1.5x on a B = 100, k = 1000 pass on this
    project's 2-core CPU (docs/performance.md). Keeping freed blocks adds nothing to the peak: the
    resident size stays at the peak the process reached instead of shrinking between requests. Returns False, changing nothing, where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), capped by the
    CPUs this process may run on; at least 1."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:
        text = (cgroup_root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
            p = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
            if q > 0 and p > 0:
                quota = q / p
        except (OSError, ValueError):
            pass
    return max(1, min(available, math.ceil(quota) if quota else available))


# Rows (inputs x chains) of one pass below which a second intra-op thread costs more than it saves. On this
# project's 2-core CPU, AIS on vae1-iwae50: 100 chains x 1 input ran 37,000 gradient evaluations/s on one
# thread and 13,000 on two (OMP_WAIT_POLICY=PASSIVE); 400 rows 1.78 s on one and 1.19 s on two, 2,000 rows
# 8.2 s and 4.3 s (docs/performance.md, "Threads").
ROWS_PER_THREAD = 200
_budget: int | None = None  # the most threads this process gives one pass (set_thread_budget)


def set_thread_budget(threads: int) -> None:
    """The most intra-op threads a pass may use (the service and the CLIs set it once: 0 means one per
    usable CPU); passes of few rows use fewer (``threads_for_rows``)."""
    global _budget
    _budget = threads or cpu_limit()
    torch.set_num_threads(_budget)


def adopt_thread_budget() -> None:
    """Apply the budget in the calling thread. torch reports one count for the process, but MKL keeps its
    thread count per thread: a thread started later (the service's device worker) ran its matrix products
    on every core whatever the budget, and rounded them differently from a one-thread run of the same chunk
    (found by comparing a job's rows on Ray actors with the in-process worker's)."""
    torch.set_num_threads(thread_budget())


def thread_budget() -> int:
    return _budget or cpu_limit()


def threads_for(rows: int, cap: int) -> int:
    """Intra-op threads for model passes of ``rows`` rows: one per ``ROWS_PER_THREAD``, 1 to ``cap``."""
    return max(1, min(cap, rows // ROWS_PER_THREAD))


@contextmanager
def threads_for_rows(rows: int, device: torch.device) -> Iterator[int]:
    """Within: as many threads as passes of ``rows`` rows use well on the CPU (``threads_for``), the budget
    restored after. Torch's thread count is the process's: callers are the one thread that runs models (the
    service's device worker, a CLI's main thread)."""
    before = torch.get_num_threads()
    wanted = threads_for(rows, thread_budget()) if device.type == "cpu" else before
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != before:
            torch.set_num_threads(before)


def thread_text() -> str:
    """The thread setting in force, for the output of long runs (it decides their speed)."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return (
        f"up to {thread_budget()} torch thread(s) of {cpu_limit()} CPU(s) (AIS passes of under {ROWS_PER_THREAD} "
        f"chains x inputs per thread use fewer), OMP_WAIT_POLICY={policy}"
    )
