"""torch.compile of AIS's inner loop against the eager code, on the same model, shapes and numbers: the evidence
for choosing how the HMC step loses its per-step Python overhead (the issue weighs CUDA graphs against
torch.compile). On a CPU here; with ``--device cuda`` each compiled form also runs with ``mode="reduce-overhead"``
(torch.compile's CUDA graphs).

One HMC move's L leapfrog steps (the work between two Metropolis tests, where AIS spends its time) three ways:

- ``eager``: as ``logpx.samplers.ais`` runs it: each evaluation a forward pass and two ``autograd.grad`` calls
  (log pi_0 and the annealed term kept apart, ``_Target.state``);
- ``compiled evaluation``: the leapfrog loop in Python, each evaluation compiled (gradients by ``torch.func.grad``:
  ``autograd.grad`` inside a compiled function breaks the graph, and measured 1.8x slower than eager);
- ``compiled move``: the whole move compiled, its L steps unrolled into one graph.

All three compute the same numbers (the largest relative difference is printed); they take turns in every repeat. The
compile time (paid once per model and shape) is reported beside the per-move time.

    python -m benchmarks.ais_compile [--models vae1-iwae50 conv-mnist] [--shapes 16x16 100x16] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from logpx.families import LatentVariableModel
from logpx.io import load_checkpoint
from logpx.runtime import keep_freed_memory

from .machine import RESULTS_DIR, machine_info, timed_together

Evaluation = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def evaluations(model: LatentVariableModel, x: torch.Tensor) -> tuple[Evaluation, Evaluation]:
    """The tempered density's two terms at z and their gradients (``_Target.state``): eager, and in the
    functional form torch.compile can trace."""
    log_q = model.q_for(x)

    def parts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base = log_q(z)
        return base, model.log_joint(x, z) - base

    def eager(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            base, f = parts(z)
            (grad_base,) = torch.autograd.grad(base.sum(), z, retain_graph=True)
            (grad_f,) = torch.autograd.grad(f.sum(), z)
        return base.detach(), f.detach(), grad_base, grad_f

    def functional(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        grad_base = torch.func.grad(lambda w: parts(w)[0].sum())(z)
        grad_f = torch.func.grad(lambda w: parts(w)[1].sum())(z)
        base, f = parts(z)
        return base, f, grad_base, grad_f

    return eager, functional


def move(evaluate: Evaluation, leapfrog: int) -> Callable[..., tuple[torch.Tensor, ...]]:
    """L leapfrog steps at temperature ``beta`` from ``z`` with momentum ``p``, as ``logpx.samplers.ais._hmc``."""

    def run(
        z: torch.Tensor, p: torch.Tensor, step: torch.Tensor, beta: torch.Tensor, gb: torch.Tensor, gf: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        p = p + 0.5 * step * (gb + beta * gf)
        for i in range(leapfrog):
            z = z + step * p
            base, f, gb, gf = evaluate(z)
            if i < leapfrog - 1:
                p = p + step * (gb + beta * gf)
        p = p + 0.5 * step * (gb + beta * gf)
        return z, p, base, f, gb, gf

    return run


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vae1-iwae50", "conv-mnist"])
    parser.add_argument("--shapes", nargs="+", default=["16x16", "100x16"], help="chains x inputs")
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (AIS of few chains runs on one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    modes = ["default"] + (["reduce-overhead"] if args.device.startswith("cuda") else [])
    m = machine_info(args.device)
    print(
        f"machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), device {args.device}"
    )
    rows = []
    torch.set_grad_enabled(False)  # as AIS runs: each evaluation turns gradients on for itself
    for name in args.models:
        model = load_checkpoint(Path("checkpoints") / f"{name}.safetensors", args.device).model
        assert isinstance(model, LatentVariableModel)
        for shape in args.shapes:
            chains, batch = (int(n) for n in shape.split("x"))
            g = torch.Generator(device=args.device).manual_seed(0)
            x = (torch.rand(batch, model.input_dim, generator=g, device=args.device) < 0.2).float()
            eager, functional = evaluations(model, x)
            z = model.sample_q(x, model.sample_noise(chains, batch, g))
            p = torch.randn(z.shape, generator=g, device=args.device)
            step = torch.full((1, batch, 1), 0.05, device=args.device)
            beta = torch.tensor(0.5, device=args.device)
            inputs = (z, p, step, beta, *eager(z)[2:])
            ways: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {"eager": move(eager, args.leapfrog)}
            compile_s = {}
            for mode in modes:
                suffix = "" if mode == "default" else f" ({mode})"
                ways[f"compiled evaluation{suffix}"] = move(torch.compile(functional, mode=mode), args.leapfrog)
                ways[f"compiled move{suffix}"] = torch.compile(move(functional, args.leapfrog), mode=mode)
            for way, run in ways.items():  # the first call compiles
                started = time.perf_counter()
                run(*inputs)
                compile_s[way] = time.perf_counter() - started
            reference = ways["eager"](*inputs)
            differences = {  # relative to the value's size: a chain that has left the typical set has large ones
                way: max(
                    float(((a - b).abs() / b.abs().clamp(min=1)).max())
                    for a, b in zip(run(*inputs), reference, strict=True)
                )
                for way, run in ways.items()
            }
            times = timed_together(
                {way: (lambda run=run: run(*inputs)) for way, run in ways.items()}, args.repeats, args.device
            )
            eager_s = times["eager"]["median_s"]
            row = {
                "model": name,
                "chains": chains,
                "inputs": batch,
                "ms_per_move": {way: 1e3 * t["median_s"] for way, t in times.items()},
                "speedup_over_eager": {way: eager_s / t["median_s"] for way, t in times.items()},
                "first_call_s": compile_s,
                "largest_relative_difference": differences,
            }
            rows.append(row)
            print(f"{name}, {chains} chains x {batch} inputs, leapfrog {args.leapfrog}:")
            for way in ways:
                print(
                    f"  {way:<28} {row['ms_per_move'][way]:8.2f} ms a move  {row['speedup_over_eager'][way]:5.2f}x eager"
                    f"  first call {compile_s[way]:6.1f} s  largest relative difference {differences[way]:.1e}",
                    flush=True,
                )
    result = {"machine": m, "leapfrog": args.leapfrog, "repeats": args.repeats, "rows": rows}
    out = Path(args.out or RESULTS_DIR / f"ais-compile-{args.device.split(':')[0]}.json")
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
