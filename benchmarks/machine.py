"""What every benchmark reports beside its numbers: the machine, and a timer with spread."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).parent / "results"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def timed_together(
    fns: dict[str, Callable[[], Any]], repeats: int = 5, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """Median, min and max wall time of each function over ``repeats`` runs, after one warm-up run each.
    The functions take turns within every repeat, so that drift in the machine's speed (this one shares
    its host) falls on all of them alike and their ratios stay honest."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in fns}
    for repeat in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            if repeat:
                times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": repeats}
        for name, t in times.items()
    }


def timed(fn: Callable[[], Any], repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """Median, min and max wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
    return timed_together({"fn": fn}, repeats, device)["fn"]


def save(name: str, payload: dict[str, Any], markdown: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    (RESULTS_DIR / f"{name}.md").write_text(markdown)
    return path
