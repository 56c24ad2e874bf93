"""Threads and OpenMP's wait policy on a CPU: what logpx chooses (``OMP_WAIT_POLICY=PASSIVE`` and, for AIS,
one thread per ``ROWS_PER_THREAD`` chains x inputs) against fixed settings, on an idle machine and beside
one busy process (a shared machine), as ratios to one thread.

The wait policy is read once, when torch loads OpenMP, so every setting runs in a process of its own (a
worker that imports torch before logpx, so that logpx's default does not apply unless asked for). The
settings take turns within every repeat, so that drift in the machine's speed falls on all alike.

    python -m benchmarks.threads [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from .machine import machine_info, save

WORKLOADS = {
    "ais-request": "AIS, 1 input x 100 chains, 20 temperatures (the advised request's size)",
    "ais-batch": "AIS, 20 inputs x 100 chains, 5 temperatures (a job chunk's size)",
    "iwae": "IWAE, 20 inputs x k = 5000",
}


def worker(threads: int, rows_rule: bool) -> dict[str, float]:
    """Best of two runs of each workload, in this process's thread setting."""
    import torch  # before logpx: the environment's wait policy, not logpx's default, is the one in force

    from logpx import runtime
    from logpx.io import load_checkpoint
    from logpx.plan import AIS, EstimatorSpec, Plan
    from logpx.samplers import run_plan

    runtime.set_thread_budget(threads)
    if not rows_rule:
        runtime.ROWS_PER_THREAD = 1  # every pass gets the whole budget
    model = load_checkpoint("checkpoints/vae1-iwae50.safetensors").model
    x = (torch.rand(20, 784, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    work = {
        "ais-request": (x[:1], Plan.of(EstimatorSpec("iwae", 100), sampler=AIS(steps=20))),
        "ais-batch": (x, Plan.of(EstimatorSpec("iwae", 100), sampler=AIS(steps=5))),
        "iwae": (x, Plan.of(EstimatorSpec("iwae", 5000))),
    }
    out = {}
    with torch.no_grad():
        for name, (inputs, plan) in work.items():
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                run_plan(model, inputs, plan, torch.Generator().manual_seed(0))
                best = min(best, time.perf_counter() - start)
            out[name] = best
    return out


def _settings(threads: int) -> dict[str, dict[str, Any]]:
    return {
        "1 thread": {"threads": 1, "policy": "PASSIVE", "rows_rule": False},
        f"{threads} threads, OpenMP's default wait": {"threads": threads, "policy": None, "rows_rule": False},
        f"{threads} threads, ACTIVE": {"threads": threads, "policy": "ACTIVE", "rows_rule": False},
        f"{threads} threads, PASSIVE": {"threads": threads, "policy": "PASSIVE", "rows_rule": False},
        f"logpx: up to {threads}, PASSIVE, rows rule": {"threads": threads, "policy": "PASSIVE", "rows_rule": True},
    }


def _run(setting: dict[str, Any]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if setting["policy"]:
        env["OMP_WAIT_POLICY"] = setting["policy"]
    args = [sys.executable, "-m", "benchmarks.threads", "--worker", str(setting["threads"])]
    args += ["--rows-rule"] if setting["rows_rule"] else []
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="the threads of the multi-threaded settings")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows-rule", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.rows_rule)))
        return {}
    settings = _settings(args.threads)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for condition in ("idle", "beside one busy process"):
        busy = None
        if condition != "idle":  # a neighbour that keeps one core busy, as a second user's job would
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            times: dict[str, dict[str, list[float]]] = {name: {w: [] for w in WORKLOADS} for name in settings}
            for _ in range(args.repeats):
                for name, setting in settings.items():
                    for w, spent in _run(setting).items():
                        times[name][w].append(spent)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        results[condition] = {name: {w: min(ts) for w, ts in per.items()} for name, per in times.items()}
    lines = [
        "# Threads and wait policy (CPU)",
        "",
        f"Machine: {json.dumps(machine_info())}",
        "",
        *[f"- {w}: {text}" for w, text in WORKLOADS.items()],
        "",
        "Seconds (best of the repeats), and in brackets the ratio to 1 thread (below 1: faster).",
    ]
    for condition, per in results.items():
        base = per["1 thread"]
        lines += [
            "",
            f"## {condition}",
            "",
            "| setting | " + " | ".join(WORKLOADS) + " |",
            "|---|" + "---|" * len(WORKLOADS),
        ]
        for name, seconds in per.items():
            cells = [f"{seconds[w]:.2f} ({seconds[w] / base[w]:.2f})" for w in WORKLOADS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    payload = {"machine": machine_info(), "workloads": WORKLOADS, "seconds": results}
    save("threads-cpu", payload, markdown)
    return payload


if __name__ == "__main__":
    main()
