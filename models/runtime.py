"""Process-wide settings for running models on a CPU, applied by the entry points (service, CLIs,
benchmarks), never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["CheckFn", "cpu_limit", "keep_freed_memory", "resolve_device", "thread_text", "threads_for"]

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


# Rows (inputs x chains) of one pass below which a second intra-op thread costs more than it saves: on this
# project's 2-core CPU an AIS pass of 64 rows ran in 2.55 s on one thread and 2.80 s on two (idle machine),
# 400 rows 1.78 s and 1.19 s, 2,000 rows 8.2 s and 4.3 s (docs/performance.md, "Threads").
ROWS_PER_THREAD = 200


def threads_for(rows: int, cap: int) -> int:
    """Intra-op threads for model passes of ``rows`` rows: one per ``ROWS_PER_THREAD``, 1 to ``cap``."""
    return max(1, min(cap, rows // ROWS_PER_THREAD))


def thread_text() -> str:
    """The thread setting in force, for the output of long runs (it decides their speed)."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return f"{torch.get_num_threads()} torch thread(s) of {cpu_limit()} CPU(s), OMP_WAIT_POLICY={policy}"
