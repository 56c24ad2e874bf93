"""Evaluation jobs beside interactive traffic, on a real server:

    python -m benchmarks.jobs [--device cpu|cuda] [--requests 200] [--inputs 2000] [--k 1000]

1. Interactive latency, B = 1, k = 100, one client sending back to back: p50 and p99 with the server idle,
   then with a job running (the job is big enough to outlast the measurement; checked), alternated twice.
2. Job throughput: a job of ``--inputs`` inputs x IWAE-k against the same work as direct requests, one
   client sending the job's chunks (``chunk_size`` inputs each, same k) one after another, alternated.
   The job's time is the server's own (started to finished); the requests' includes their HTTP round trips.
Results: benchmarks/results/jobs-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.local_server import LocalServer

from .load import closed_loop
from .machine import machine_info, save

ROOT = Path(__file__).resolve().parents[1]
MODEL = "vae1-iwae50"


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_ms": 1e3 * statistics.median(ordered), "p99_ms": 1e3 * ordered[int(0.99 * (len(ordered) - 1))]}


def _interactive(url: str, n: int) -> list[float]:
    body = {
        "inputs": [[0.0] * 300 + [1.0] * 184 + [0.0] * 300],
        "estimator": {"name": "iwae", "k": 100},
        "diagnostics": False,
    }
    latencies, _ = closed_loop(url, f"/v1/models/{MODEL}/evidence", json.dumps(body).encode(), 1, n)
    return latencies


def _wait(http: httpx.Client, job_id: str) -> dict[str, Any]:
    while (status := http.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=200, help="interactive requests per measurement")
    parser.add_argument("--inputs", type=int, default=2000, help="inputs of the throughput job")
    parser.add_argument("--k", type=int, default=1000, help="IWAE samples per input of the jobs")
    parser.add_argument("--chunk-evals", type=int, default=None, help="LOGPX_JOB_CHUNK_EVALS (default: the server's)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = (rng.random((args.inputs, 784)) < 0.2).astype(np.uint8) * 255
    inputs = (images // 255).tolist()
    upload = io.BytesIO()
    np.save(upload, images)  # a data set travels as a file (.npy here), not as JSON numbers
    job_form = {"model": MODEL, "estimators": f"iwae:{args.k}", "seed": "0"}
    job_files = {"data": ("data.npy", upload.getvalue(), "application/octet-stream")}
    rows: dict[str, Any] = {"idle": [], "job_running": []}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{MODEL}.safetensors").symlink_to(ROOT / "checkpoints" / f"{MODEL}.safetensors")
        env = {"LOGPX_DEVICE": args.device, "LOGPX_LOG_LEVEL": "warning"}
        if args.chunk_evals:
            env["LOGPX_JOB_CHUNK_EVALS"] = str(args.chunk_evals)
        with LocalServer(Path(folder), env=env) as server, httpx.Client(base_url=server.url, timeout=600) as http:
            _interactive(server.url, 20)  # warm-up
            for _ in range(2):
                rows["idle"] += _interactive(server.url, args.requests)
                running = http.post("/v1/jobs", data=job_form, files=job_files).json()
                while http.get(f"/v1/jobs/{running['id']}").json()["state"] != "running":
                    time.sleep(0.01)
                rows["job_running"] += _interactive(server.url, args.requests)
                during = http.get(f"/v1/jobs/{running['id']}").json()
                assert during["state"] == "running", "the job ended before the measurement did: use more --inputs"
                http.delete(f"/v1/jobs/{running['id']}")
                _wait(http, running["id"])
            chunk = running["chunk_size"]
            job_s, direct_s = [], []
            for _ in range(2):
                done = _wait(http, http.post("/v1/jobs", data=job_form, files=job_files).json()["id"])
                job_s.append(done["progress"]["elapsed_s"])
                start = time.perf_counter()
                for i in range(0, args.inputs, chunk):
                    body = {"inputs": inputs[i : i + chunk], "estimator": {"name": "iwae", "k": args.k}, "seed": i}
                    assert http.post(f"/v1/models/{MODEL}/evidence", json=body).status_code == 200
                direct_s.append(time.perf_counter() - start)
    result = {
        "machine": machine_info(args.device),
        "interactive": {"B": 1, "k": 100, "requests": len(rows["idle"])}
        | {f"idle_{k}": v for k, v in _percentiles(rows["idle"]).items()}
        | {f"job_running_{k}": v for k, v in _percentiles(rows["job_running"]).items()},
        "throughput": {
            "inputs": args.inputs,
            "k": args.k,
            "chunk_size": chunk,
            "job_s": job_s,
            "direct_s": direct_s,
            "job_inputs_per_s": args.inputs / statistics.median(job_s),
            "direct_inputs_per_s": args.inputs / statistics.median(direct_s),
        },
    }
    i, t, m = result["interactive"], result["throughput"], result["machine"]
    markdown = "\n".join(
        [
            f"Machine: {m['processor']}, {m['cpu_count']} CPUs{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']}; "
            f"device {args.device}; {m['date']}",
            "",
            f"Interactive B = 1, k = 100, one client, {i['requests']} requests each:",
            "",
            "| server | p50 ms | p99 ms |",
            "|---|---|---|",
            f"| idle | {i['idle_p50_ms']:.1f} | {i['idle_p99_ms']:.1f} |",
            f"| job running | {i['job_running_p50_ms']:.1f} | {i['job_running_p99_ms']:.1f} |",
            "",
            f"Throughput, {t['inputs']} inputs x IWAE-{t['k']} (chunks of {t['chunk_size']}): job "
            f"{t['job_inputs_per_s']:.1f} inputs/s, the same chunks as direct requests {t['direct_inputs_per_s']:.1f} "
            f"inputs/s: job / direct = {t['job_inputs_per_s'] / t['direct_inputs_per_s']:.2f}",
        ]
    )
    print(markdown)
    name = f"jobs-{args.device}" + (f"-chunk{args.chunk_evals}" if args.chunk_evals else "")
    print(f"saved {save(name, result, markdown + chr(10))}")


if __name__ == "__main__":
    main()
