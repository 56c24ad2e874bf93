"""Estimator cost: iwae, jvi order 1 and 2 on the same log-weights, against subset enumeration.

    python -m benchmarks.estimators [--device cpu|cuda] [--repeats 5]

B = 100 inputs, k in {100, 1000, 5000}. The baseline is the exact enumeration of the C(k, j) subsets
that public JVI reference code performs (O(k^(j+1)) per input); it runs where its C(k, j) x k x B
float64 intermediate stays under --enumeration-limit elements. Prints a Markdown table, saves JSON and
Markdown under benchmarks/results/.
"""

from __future__ import annotations

import argparse

import torch

from logpx import iwae, jvi
from logpx.estimators.jackknife import lbar, lbar_enumerated

from .machine import machine_info, save, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--enumeration-limit", type=float, default=2e9)
    args = parser.parse_args()
    g = torch.Generator(device=args.device).manual_seed(0)
    rows = []
    for k in args.ks:
        log_w = torch.randn(k, args.batch, generator=g, device=args.device) * 3
        row: dict[str, object] = {"k": k, "B": args.batch}
        row["iwae"] = timed(lambda: iwae(log_w), args.repeats, args.device)
        row["jvi1"] = timed(lambda: jvi(log_w, 1), args.repeats, args.device)
        row["jvi2"] = timed(lambda: jvi(log_w, 2), args.repeats, args.device)
        for j in (1, 2):
            elements = (k**j if j == 1 else k * (k - 1) // 2) * k * args.batch
            if elements <= args.enumeration_limit:
                reps = 1 if elements > 1e8 else args.repeats
                row[f"enum_lbar{j}"] = timed(lambda: lbar_enumerated(log_w, j), reps, args.device)
                # Same quantity, the library's path: the ratio is the speed-up on identical work.
                row[f"fast_lbar{j}"] = timed(lambda: lbar(log_w, j), args.repeats, args.device)
        rows.append(row)
        print(k, {n: (v["median_s"] if isinstance(v, dict) else v) for n, v in row.items()}, flush=True)

    def cell(row: dict[str, object], name: str) -> str:
        v = row.get(name)
        return (
            f"{v['median_s'] * 1e3:.2f} ({v['min_s'] * 1e3:.2f}-{v['max_s'] * 1e3:.2f})"
            if isinstance(v, dict)
            else "n/a (memory)"
        )

    def speedup(row: dict[str, object], j: int) -> str:
        e, f = row.get(f"enum_lbar{j}"), row.get(f"fast_lbar{j}")
        return f"{e['median_s'] / f['median_s']:.0f}x" if isinstance(e, dict) and isinstance(f, dict) else "n/a"

    info = machine_info(args.device)
    lines = [
        f"Machine: {info['processor']}, {info['cpu_count']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), device {info['device']}, {info['date']}",
        "",
        f"Milliseconds, median (min-max) over repeats; B = {args.batch}.",
        "",
        "| k | iwae | jvi order 1 | jvi order 2 (exact) | enumerate Lbar_{k-1} | enumerate Lbar_{k-2} | speed-up j=1 | speed-up j=2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['k']} | {cell(row, 'iwae')} | {cell(row, 'jvi1')} | {cell(row, 'jvi2')} | {cell(row, 'enum_lbar1')} | {cell(row, 'enum_lbar2')} | {speedup(row, 1)} | {speedup(row, 2)} |"
        )
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    path = save(f"estimators-{args.device}", {"machine": info, "rows": rows}, markdown)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
