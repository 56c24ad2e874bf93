"""Process-wide settings for running models on a CPU, applied by the entry points (service, CLIs,
benchmarks), never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

import torch

__all__ = ["CheckFn", "keep_freed_memory", "resolve_device"]

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
