"""Soak test: concurrent clients mixing valid and invalid requests against a real server on loopback.

    python -m benchmarks.soak [--duration 180] [--clients 16] [--max-requests 200000] \
        [--checkpoint-dir checkpoints] [--model vae1-iwae50]

Starts `logpx serve` on a free loopback port, runs until the duration or request count is reached,
stops the server, and reports requests served, status counts (every status must be the one expected for
its request kind), latency p50 / p99, and the server's resident memory after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from tests.local_server import LocalServer

from .machine import machine_info, save


def _png(side: int = 28) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((side, side)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def request_kinds(model: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(name, expected status, httpx request kwargs); weights favour valid requests."""
    image = [0.0] * 300 + [1.0] * 184 + [0.0] * 300
    ev = f"/v1/models/{model}/evidence"
    return [
        (
            "evidence",
            200,
            {"method": "POST", "url": ev, "json": {"inputs": [image], "estimator": {"name": "iwae", "k": 100}}},
        ),
        (
            "evidence_jvi",
            200,
            {
                "method": "POST",
                "url": ev,
                "json": {"inputs": [image] * 4, "estimator": {"name": "jvi", "k": 200, "order": 2}},
            },
        ),
        (
            "compare",
            200,
            {
                "method": "POST",
                "url": f"/v1/models/{model}/compare",
                "json": {
                    "inputs": [image],
                    "estimators": [{"name": "iwae", "k": 50}, {"name": "jvi", "k": 50}],
                    "replicates": 3,
                },
            },
        ),
        (
            "png",
            200,
            {
                "method": "POST",
                "url": ev + "/images",
                "files": [("files", ("a.png", _png(), "image/png"))],
                "data": {"k": "50"},
            },
        ),
        ("models", 200, {"method": "GET", "url": "/v1/models"}),
        ("bad_shape", 422, {"method": "POST", "url": ev, "json": {"inputs": [[0.5] * 100]}}),
        ("bad_value", 422, {"method": "POST", "url": ev, "json": {"inputs": [[7.0] * 784]}}),
        (
            "bad_k",
            422,
            {"method": "POST", "url": ev, "json": {"inputs": [image], "estimator": {"name": "iwae", "k": 0}}},
        ),
        (
            "bad_json",
            422,
            {"method": "POST", "url": ev, "content": b'{"inputs": [', "headers": {"content-type": "application/json"}},
        ),
        ("bad_media", 415, {"method": "POST", "url": ev, "content": b"x", "headers": {"content-type": "text/plain"}}),
        (
            "bad_png_size",
            422,
            {"method": "POST", "url": ev + "/images", "files": [("files", ("a.png", _png(29), "image/png"))]},
        ),
        (
            "not_an_image",
            422,
            {"method": "POST", "url": ev + "/images", "files": [("files", ("a.png", b"hello", "image/png"))]},
        ),
        ("unknown_model", 404, {"method": "POST", "url": "/v1/models/nope/evidence", "json": {"inputs": [image]}}),
        # The adversarial corpus (docs/reliability.md): each must be refused as cheaply as it is cheap to send.
        (
            "random_model_name",
            404,
            {"method": "POST", "url": f"/v1/models/x{random.getrandbits(48):x}/evidence", "json": {"inputs": [image]}},
        ),
        (
            "jvi_over_budget",
            413,
            {
                "method": "POST",
                "url": ev,
                "json": {"inputs": [image] * 3, "estimator": {"name": "jvi", "k": 100_000, "order": 2}},
            },
        ),
        (
            "jvi_not_exact",
            422,
            {
                "method": "POST",
                "url": ev,
                "json": {"inputs": [image], "estimator": {"name": "jvi", "k": 1000, "order": 3}},
            },
        ),
        (
            "jvi_high_order_small_k",
            200,
            {
                "method": "POST",
                "url": ev,
                "json": {"inputs": [image], "estimator": {"name": "jvi", "k": 14, "order": 8}},
            },
        ),
        (
            "deep_json",
            422,
            {
                "method": "POST",
                "url": ev,
                "content": b"[" * 50_000 + b"]" * 50_000,
                "headers": {"content-type": "application/json"},
            },
        ),
        (
            "oip_bad_params",
            422,
            {
                "method": "POST",
                "url": f"/v2/models/{model}/infer",
                "json": {
                    "inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": image}],
                    "parameters": {"k": "many", "binarize": "sometimes"},
                },
            },
        ),
        (
            "oip_zero_batch",
            422,
            {
                "method": "POST",
                "url": f"/v2/models/{model}/infer",
                "json": {"inputs": [{"name": "x", "shape": [0, 784], "datatype": "FP32", "data": []}]},
            },
        ),
        (
            "truncated_png",
            422,
            {"method": "POST", "url": ev + "/images", "files": [("files", ("a.png", _png()[:-30], "image/png"))]},
        ),
        (
            "ais",
            200,
            {
                "method": "POST",
                "url": ev,
                "json": {
                    "inputs": [image],
                    "estimator": {"name": "iwae", "k": 8},
                    "sampler": {"name": "ais", "steps": 20, "leapfrog": 5},
                },
            },
        ),
    ]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run(
    checkpoint_dir: str, model: str, duration: float, clients: int, max_requests: int, seed: int = 0
) -> dict[str, Any]:
    env = {"LOGPX_LOG_LEVEL": "warning", "LOGPX_QUEUE_DEPTH": str(4 * clients)}
    with LocalServer(checkpoint_dir, env=env) as server:
        url = server.url
        assert server.proc is not None
        pid = server.proc.pid
        kinds = request_kinds(model)
        weights = [6 if status == 200 else 1 for _, status, _ in kinds]
        statuses: Counter[str] = Counter()
        unexpected: Counter[str] = Counter()
        latencies: list[float] = []
        lock = threading.Lock()
        count = [0]
        start = time.monotonic()
        warm_rss: list[int] = []

        def client(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            with httpx.Client(base_url=url, timeout=60) as http:
                while time.monotonic() - start < duration:
                    with lock:
                        if count[0] >= max_requests:
                            return
                        count[0] += 1
                    name, expected, kwargs = rng.choices(kinds, weights)[0]
                    t0 = time.perf_counter()
                    r = http.request(**kwargs)
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)
                        statuses[f"{r.status_code}"] += 1
                        if r.status_code != expected:
                            unexpected[f"{name}: {r.status_code}"] += 1

        def sample_warm_rss() -> None:
            time.sleep(min(duration * 0.2, 30))
            warm_rss.append(rss_bytes(pid))

        sampler = threading.Thread(target=sample_warm_rss)
        sampler.start()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sampler.join()
        wall = time.monotonic() - start
        end_rss = rss_bytes(pid)
    latencies.sort()
    return {
        "requests": len(latencies),
        "wall_s": wall,
        "clients": clients,
        "model": model,
        "statuses": dict(statuses),
        "unexpected": dict(unexpected),
        "p50_ms": 1e3 * statistics.median(latencies),
        "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
        "rss_after_warmup_mb": warm_rss[0] / 2**20,
        "rss_end_mb": end_rss / 2**20,
        "rss_growth": end_rss / warm_rss[0] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--model", default="vae1-iwae50")
    args = parser.parse_args()
    result = run(args.checkpoint_dir, args.model, args.duration, args.clients, args.max_requests)
    result["machine"] = machine_info()
    markdown = (
        f"Soak: {result['requests']} requests in {result['wall_s']:.0f} s from {result['clients']} clients; "
        f"statuses {result['statuses']}; unexpected {result['unexpected'] or 'none'}; latency p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms; RSS {result['rss_after_warmup_mb']:.0f} MB after warm-up, {result['rss_end_mb']:.0f} MB at the end "
        f"({100 * result['rss_growth']:+.1f}%).\n"
    )
    print(json.dumps(result, indent=2))
    print(markdown)
    save("soak", result, markdown)


if __name__ == "__main__":
    main()
