"""Jobs on Ray against jobs in the server process (docs/performance.md, "Jobs on Ray").

For each executor (in-process: the server's device worker with every core; Ray with 1 and 2 CPU actors of one
thread each, ``LOGPX_RAY_ADDRESS=local``) a real ``logpx serve`` runs two jobs through HTTP: AIS
(``iwae:16@ais:200``) and IWAE-5000, over held-out digits; inputs per second from the job's own started and
finished times. Same data, seed and plan everywhere; the rows' largest difference from the in-process run is
printed (the in-process worker multiplies matrices on two threads, the actors on one: float32 rounding only).

    python -m benchmarks.ray_jobs [--ais-inputs 24] [--iwae-inputs 200]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from logpx.io.data import read_idx
from tests.local_server import LocalServer

from .machine import RESULTS_DIR, machine_info

DIGITS = Path("tests/data/mnist-valid200/valid200-images-idx3-ubyte.gz")
EXECUTORS = {
    "in-process": {},
    "ray, 1 actor": {"LOGPX_RAY_ADDRESS": "local", "LOGPX_RAY_ACTORS": "1"},
    "ray, 2 actors": {"LOGPX_RAY_ADDRESS": "local", "LOGPX_RAY_ACTORS": "2"},
}


def _run(url: str, inputs: list[list[float]], estimators: list[dict]) -> tuple[float, list[str], dict]:  # type: ignore[type-arg]
    body = {"model": "vae1-iwae50", "inputs": inputs, "estimators": estimators, "seed": 0}
    job = httpx.post(f"{url}/v1/jobs", json=body, timeout=60).json()
    while (status := httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=30).json())["state"] in ("queued", "running"):
        time.sleep(0.5)
    assert status["state"] == "succeeded", status["error"]
    seconds = (datetime.fromisoformat(status["finished"]) - datetime.fromisoformat(status["started"])).total_seconds()
    rows = httpx.get(f"{url}/v1/jobs/{job['id']}/results", timeout=60).text.splitlines()
    return len(inputs) / seconds, rows, status["runs_on"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ais-inputs", type=int, default=24)
    parser.add_argument("--iwae-inputs", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS_DIR / "ray-jobs-cpu.json"))
    args = parser.parse_args(argv)
    digits = read_idx(DIGITS).reshape(-1, 784).astype(np.float32) / 255.0
    jobs = {
        "AIS iwae:16@ais:200": (
            digits[: args.ais_inputs],
            [{"name": "iwae", "k": 16, "sampler": {"name": "ais", "steps": 200}}],
        ),
        "IWAE-5000": (digits[: args.iwae_inputs], [{"name": "iwae", "k": 5000}]),
    }
    table: dict[str, dict[str, float]] = {}
    reference: dict[str, np.ndarray] = {}
    where: dict[str, dict] = {}  # type: ignore[type-arg]
    for name, env in EXECUTORS.items():
        with LocalServer("checkpoints", env={"LOGPX_DEVICE": "cpu", **env}) as server:
            for job, (x, estimators) in jobs.items():
                rate, rows, runs_on = _run(server.url, x.round(4).tolist(), estimators)
                values = np.array([json.loads(r)["estimates"][0]["log_px"] for r in rows], dtype=float)
                differs = float(np.abs(values - reference.setdefault(job, values)).max())
                table.setdefault(job, {})[name] = rate
                where[name] = runs_on
                print(f"{job:>20} | {name:>14}: {rate:7.2f} inputs/s, rows within {differs:.1e} nats ({runs_on})")
    lines = ["| job | " + " | ".join(EXECUTORS) + " |", "|---|" + "---|" * len(EXECUTORS)]
    for job, rates in table.items():
        base = rates["in-process"]
        cells = [f"{rates[n]:.2f} ({rates[n] / base:.2f}x)" for n in EXECUTORS]
        lines.append(f"| {job} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    result: dict[str, object] = {"machine": machine_info("cpu"), "inputs_per_s": table, "runs_on": where}
    Path(args.out).write_text(json.dumps(result, indent=2))
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
