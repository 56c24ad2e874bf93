"""The benchmark suite: one command, a JSON file and a Markdown table.

    python -m benchmarks.run [--device cpu|cuda] [--repeats 3] [--quick] [--out NAME]

1. Throughput of log-weight evaluation (importance samples / s) for the one- and two-layer models,
   B in {1, 100}, k in {100, 1000, 5000}; FLOPs per sample counted from the architecture; the matrix
   multiply rate this machine reaches on the same GEMM shapes; efficiency = achieved / measured.
2. Baseline in the same run: the per-example loop of public reference code (benchmarks/reference.py:
   one image at a time, the image repeated k times through encoder and decoder, float64) on the same
   checkpoint and the same draws, checked to give the same log-weights.
3. Estimator overhead: jvi order 1 and order 2 (exact) at k = 1000, B = 100, as a fraction of the
   forward pass they follow.
4. HTTP (a real server on loopback): latency p50 / p99 of B = 1, k = 100 at concurrency 1, 8, 32;
   throughput of B = 100, k = 5000 over HTTP against the same work in-process; throughput at
   concurrency 32 with dynamic batching off and on.
Every figure is a median over repeats with its min and max. Results: benchmarks/results/<out>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn

from logpx import EstimatorSpec, estimate
from logpx.families.layers import chunk_elements
from logpx.io.checkpoint import load_checkpoint
from logpx.plan import Plan
from logpx.runtime import keep_freed_memory
from logpx.samplers import run_plan
from tests.local_server import LocalServer

from .load import closed_loop
from .machine import machine_info, save, timed_together
from .reference import float64_copy, reference_loop

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"one-layer": "vae1-iwae50", "two-layer": "vae2-iwae50"}


def linear_flops(module: nn.Module) -> int:
    """Multiply-adds x 2 of every Linear layer in ``module`` (tanh, sampling and the likelihood are not counted)."""
    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def flops_per_sample(model: nn.Module) -> tuple[int, int]:
    """(per sample, per input): the encoder of x runs once per input; everything else once per sample."""
    per_input = linear_flops(model.encoder)
    return linear_flops(model) - per_input, per_input


def gemm_shapes(model: nn.Module, rows: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of every per-sample Linear for ``rows`` samples."""
    shapes = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and not name.startswith("encoder."):
            shapes.append((rows, m.in_features, m.out_features))
    return shapes


def addmm_pass(shapes: list[tuple[int, int, int]], device: str, times: int = 1) -> tuple[Callable[[], None], int]:
    """``times`` passes of plain float32 ``addmm`` over the given (M, K, N) shapes, and their FLOPs.
    Each product is dropped as soon as it is made, as logpx drops a chunk's activations."""
    mats = [
        (torch.randn(m, k, device=device), torch.randn(k, n, device=device), torch.randn(n, device=device))
        for m, k, n in shapes
    ]

    def run() -> None:
        for _ in range(times):
            for a, w, b in mats:
                torch.addmm(b, a, w)

    return run, times * sum(2 * m * k * n for m, k, n in shapes)


def throughput(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """logpx, the machine's matrix-multiply ceiling for the same layers, and (for two shapes) the
    baseline, timed in turn within each repeat."""
    ks = [100, 1000] if args.quick else [100, 1000, 5000]
    for label, name in MODELS.items():
        model = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors", args.device).model
        model64 = float64_copy(model)
        per_sample, per_input = flops_per_sample(model)
        chunk = max(1, chunk_elements(torch.device(args.device)) // model.elements_per_sample())
        for batch in (1, 100):
            for k in ks:
                x = (torch.rand(batch, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float().to(args.device)
                noise = model.sample_noise(k, batch, torch.Generator(device=args.device).manual_seed(0))

                def run() -> torch.Tensor:
                    with torch.inference_mode():
                        return model.log_weights_from_noise(x, noise)

                # The ceiling: the per-sample layers' GEMMs alone on the same samples, either all rows at
                # once or chunk by chunk as logpx does; the faster of the two.
                fns: dict[str, Callable[[], object]] = {"logpx": run}
                gemm_flops = {}
                fns["all rows"], gemm_flops["all rows"] = addmm_pass(gemm_shapes(model, k * batch), args.device)
                if chunk < k * batch:
                    fns["chunks"], gemm_flops["chunks"] = addmm_pass(
                        gemm_shapes(model, chunk), args.device, -(-k * batch // chunk)
                    )
                with_baseline = (batch == 100 and k == 1000) or (batch == 1 and k == ks[-1])
                if with_baseline:
                    # Baseline on identical work: same checkpoint, same draws, the same answer.
                    with torch.inference_mode():
                        gap = (reference_loop(model64, x, noise) - run().double()).abs().max().item()
                    assert gap < 0.01, f"the baseline and logpx disagree by {gap} nats"
                    fns["baseline"] = lambda: reference_loop(model64, x, noise)
                with torch.inference_mode():
                    t = timed_together(fns, args.repeats, args.device)
                flops = per_sample * k * batch + per_input * batch
                rate = max(gemm_flops[r] / t[r]["median_s"] for r in gemm_flops)
                row = {
                    "section": "throughput",
                    "model": label,
                    "B": batch,
                    "k": k,
                    **t["logpx"],
                    "samples_per_s": k * batch / t["logpx"]["median_s"],
                    "flops_per_sample": per_sample,
                    "achieved_flops_per_s": flops / t["logpx"]["median_s"],
                    "matmul_flops_per_s": rate,
                    "efficiency": flops / t["logpx"]["median_s"] / rate,
                }
                if with_baseline:
                    row.update(
                        baseline_median_s=t["baseline"]["median_s"],
                        baseline_min_s=t["baseline"]["min_s"],
                        baseline_max_s=t["baseline"]["max_s"],
                        baseline_max_gap_nats=gap,
                        speedup_vs_baseline=t["baseline"]["median_s"] / t["logpx"]["median_s"],
                    )
                rows.append(row)
                print(row, flush=True)


def estimator_overhead(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    model = load_checkpoint(ROOT / "checkpoints" / "vae1-iwae50.safetensors", args.device).model
    x = (torch.rand(100, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float().to(args.device)
    noise = model.sample_noise(1000, 100, torch.Generator(device=args.device).manual_seed(0))
    with torch.inference_mode():
        log_w = model.log_weights_from_noise(x, noise).double()
        t = timed_together(
            {
                "forward": lambda: model.log_weights_from_noise(x, noise),
                **{
                    f"jvi order {order}": (lambda order=order: estimate(log_w, EstimatorSpec("jvi", 1000, order)))
                    for order in (1, 2)
                },
            },
            args.repeats,
            args.device,
        )
    forward = t.pop("forward")
    for label, stats in t.items():
        row = {
            "section": "estimator",
            "estimator": label,
            "k": 1000,
            "B": 100,
            **stats,
            "forward_median_s": forward["median_s"],
            "fraction_of_forward": stats["median_s"] / forward["median_s"],
        }
        rows.append(row)
        print(row, flush=True)


def _server_env(device: str) -> dict[str, str]:
    return {"LOGPX_DEVICE": device, "LOGPX_LOG_LEVEL": "warning", "LOGPX_QUEUE_DEPTH": "256"}


def _load(url: str, body: dict[str, Any], concurrency: int, total: int) -> tuple[list[float], float]:
    return closed_loop(url, "/v1/models/vae1-iwae50/evidence", json.dumps(body).encode(), concurrency, total)


def http_section(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    small = {
        "inputs": [[0.0] * 300 + [1.0] * 184 + [0.0] * 300],
        "estimator": {"name": "iwae", "k": 100},
        "diagnostics": False,
    }
    with LocalServer(ROOT / "checkpoints", env=_server_env(args.device)) as server:
        for concurrency in (1, 8, 32):
            lat, wall = _load(server.url, small, concurrency, 64 if args.quick else 320)
            row = {
                "section": "http_latency",
                "concurrency": concurrency,
                "B": 1,
                "k": 100,
                "p50_ms": 1e3 * statistics.median(lat),
                "p99_ms": 1e3 * lat[int(0.99 * (len(lat) - 1))],
                "requests_per_s": len(lat) / wall,
            }
            rows.append(row)
            print(row, flush=True)
        k_large = 1000 if args.quick else 5000
        large = {
            "inputs": [[float(i % 3 == 0)] * 784 for i in range(100)],
            "estimator": {"name": "iwae", "k": k_large},
            "diagnostics": False,
        }
        model = load_checkpoint(ROOT / "checkpoints" / "vae1-iwae50.safetensors", args.device).model
        x = torch.tensor(large["inputs"], device=args.device)
        g = torch.Generator(device=args.device)  # noise drawn where the model runs, as the server does

        plan = Plan.of(EstimatorSpec("iwae", k_large))

        def in_process() -> None:  # the library's spine, as the server runs it for this request
            g.manual_seed(0)
            run_plan(model, x, plan, g)

        server_compute: list[float] = []
        with httpx.Client(base_url=server.url, timeout=600) as http:

            def over_http() -> None:
                r = http.post("/v1/models/vae1-iwae50/evidence", json=large)
                r.raise_for_status()
                server_compute.append(r.json()["timing"]["compute_s"])

            t = timed_together({"http": over_http, "in_process": in_process}, max(3, args.repeats), args.device)
        row = {
            "section": "http_large",
            "B": 100,
            "k": k_large,
            "http_median_s": t["http"]["median_s"],
            "http_min_s": t["http"]["min_s"],
            "http_max_s": t["http"]["max_s"],
            "in_process_median_s": t["in_process"]["median_s"],
            "in_process_min_s": t["in_process"]["min_s"],
            "in_process_max_s": t["in_process"]["max_s"],
            "http_over_in_process": t["http"]["median_s"] / t["in_process"]["median_s"],
            "server_compute_median_s": statistics.median(server_compute[1:]),
        }  # [0] was the warm-up
        rows.append(row)
        print(row, flush=True)
    # Batching off and on, both servers up, loads alternated.
    with (
        LocalServer(ROOT / "checkpoints", env=_server_env(args.device)) as off,
        LocalServer(ROOT / "checkpoints", env={**_server_env(args.device), "LOGPX_BATCH_MAX_INPUTS": "64"}) as on,
    ):
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for label, server in (("off", off), ("on", on)):
                lat, wall = _load(server.url, small, 32, 96 if args.quick else 2000)
                rates[label].append(len(lat) / wall)
    for label, values in rates.items():
        row = {
            "section": "batching",
            "batching": label,
            "concurrency": 32,
            "B": 1,
            "k": 100,
            "requests_per_s": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        rows.append(row)
        print(row, flush=True)


def markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    out = [
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs{', ' + info['gpu'] if 'gpu' in info else ''}; torch {info['torch']}, "
        f"{info['torch_threads']} threads; device {info['device']}; allocator {info['allocator']}; {info['date']}",
        "",
    ]
    out += [
        "### Log-weight evaluation",
        "",
        "| model | B | k | time s (min-max) | samples/s | GFLOP/s | matmul GFLOP/s | efficiency | baseline s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["section"] == "throughput"):
        base = (
            f"{r['baseline_median_s']:.3f} | {r['speedup_vs_baseline']:.1f}x" if "baseline_median_s" in r else "- | -"
        )
        out.append(
            f"| {r['model']} | {r['B']} | {r['k']} | {r['median_s']:.4f} ({r['min_s']:.4f}-{r['max_s']:.4f}) | {r['samples_per_s']:.3g} | "
            f"{r['achieved_flops_per_s'] / 1e9:.1f} | {r['matmul_flops_per_s'] / 1e9:.1f} | {100 * r['efficiency']:.0f}% | {base} |"
        )
    out += [
        "",
        "### Estimator overhead (B = 100, k = 1000)",
        "",
        "| estimator | time s (min-max) | forward s | fraction of forward |",
        "|---|---|---|---|",
    ]
    for r in (r for r in rows if r["section"] == "estimator"):
        out.append(
            f"| {r['estimator']} | {r['median_s']:.4f} ({r['min_s']:.4f}-{r['max_s']:.4f}) | {r['forward_median_s']:.4f} | {100 * r['fraction_of_forward']:.1f}% |"
        )
    out += ["", "### HTTP", "", "| request | concurrency | p50 ms | p99 ms | requests/s |", "|---|---|---|---|---|"]
    for r in (r for r in rows if r["section"] == "http_latency"):
        out.append(
            f"| B=1, k=100 | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests_per_s']:.1f} |"
        )
    for r in (r for r in rows if r["section"] == "http_large"):
        out += [
            "",
            f"B = 100, k = {r['k']} (alternated): over HTTP {r['http_median_s']:.3f} s ({r['http_min_s']:.3f}-{r['http_max_s']:.3f}), "
            f"in-process {r['in_process_median_s']:.3f} s ({r['in_process_min_s']:.3f}-{r['in_process_max_s']:.3f}): "
            f"HTTP / in-process = {r['http_over_in_process']:.3f}; of the HTTP time, {r['server_compute_median_s']:.3f} s is the "
            f"server's own compute (the model and estimator on its worker thread)",
        ]
    batching = {r["batching"]: r for r in rows if r["section"] == "batching"}
    if len(batching) == 2:
        off, on = batching["off"], batching["on"]
        out += [
            "",
            f"Dynamic batching, B = 1, k = 100, concurrency 32: off {off['requests_per_s']:.1f} req/s ({off['min']:.1f}-{off['max']:.1f}), "
            f"on {on['requests_per_s']:.1f} req/s ({on['min']:.1f}-{on['max']:.1f}): {on['requests_per_s'] / off['requests_per_s']:.2f}x",
        ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to check the suite runs")
    parser.add_argument("--sections", nargs="+", default=["throughput", "estimator", "http"])
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc's allocator as it is (to measure what logpx.runtime.keep_freed_memory buys)",
    )
    args = parser.parse_args()
    if not args.default_allocator:
        keep_freed_memory()  # as the service and the CLIs do
    rows: list[dict[str, Any]] = []
    for section in args.sections:
        {"throughput": throughput, "estimator": estimator_overhead, "http": http_section}[section](args, rows)
    info = {
        **machine_info(args.device),
        "allocator": "glibc default" if args.default_allocator else "keep_freed_memory",
    }
    text = markdown(info, rows)
    print(text)
    path = save(
        args.out or f"suite-{args.device}{'-quick' if args.quick else ''}", {"machine": info, "rows": rows}, text
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
