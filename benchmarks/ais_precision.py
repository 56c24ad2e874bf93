"""float32 AIS chains (log-weights accumulated in float64, as always) against float64 chains on the shipped
models: the same digits, the same step sizes (one tuning pass, in float64) and the same random numbers (the
samplers draw the encoder start and every HMC move's numbers in float32 whatever the chains' dtype), so that what
differs is the chains' arithmetic.
Reported per model: the mean difference of the AIS estimate (log-mean-exp of the chains) with its standard
error over digits, the largest per-digit difference against the 0.01-nat criterion of docs/performance.md, how
many chains left the other dtype's path (a Metropolis decision flipped on rounding: from there on the two
differ by Monte Carlo noise, and only the mean difference over many digits says whether float32 is biased),
and the time of each.

    python -m benchmarks.ais_precision [--models vae1-iwae50 conv-mnist ...] [--steps 500] [--digits 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

from logpx.families import LatentVariableModel
from logpx.io import binarize, load_checkpoint
from logpx.io.data import read_idx
from logpx.plan import AIS
from logpx.runtime import keep_freed_memory, set_thread_budget
from logpx.samplers import ais, tune

from .machine import RESULTS_DIR, machine_info

ROOT = Path(__file__).resolve().parents[1]
CRITERION = 0.01  # nats
DIVERGED = 1e-3  # nats between a chain's two log-weights: far above rounding (1e-6 here), so another path


def digits(name: str, count: int) -> torch.Tensor:
    folder = "fashion-valid200" if name.startswith("fashion-") else "mnist-valid200"
    path = ROOT / "tests" / "data" / folder / "valid200-images-idx3-ubyte.gz"
    return torch.from_numpy(read_idx(path)[:count].reshape(count, -1).astype("float64") / 255.0)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vae1-iwae50", "vae2-iwae50", "conv-mnist", "conv-mnist8"])
    parser.add_argument("--digits", type=int, default=8)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per CPU)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "ais-precision-cpu.json"))
    args = parser.parse_args(argv)
    set_thread_budget(args.threads)
    keep_freed_memory()
    config = AIS(steps=args.steps, leapfrog=args.leapfrog)
    rows = {}
    for name in args.models:
        checkpoint = load_checkpoint(ROOT / "checkpoints" / f"{name}.safetensors")
        model64 = checkpoint.model.double()
        assert isinstance(model64, LatentVariableModel)
        model32 = copy.deepcopy(model64).float()
        x64 = binarize(digits(name, args.digits), checkpoint.binarize, seed=checkpoint.binarize_seed).double()
        with torch.no_grad():
            steps = tune(model64, x64, config, torch.Generator().manual_seed(0), None)
            estimates, seconds, chains = {}, {}, {}
            for label, model, x in (("float64", model64, x64), ("float32", model32, x64.float())):
                started = time.perf_counter()
                result = ais(
                    model, x, args.chains, config, torch.Generator().manual_seed(1), step_sizes=steps.to(x.dtype)
                )
                seconds[label] = time.perf_counter() - started
                estimates[label] = torch.logsumexp(result.log_w, 0) - math.log(args.chains)
                chains[label] = result.log_w
        diff = estimates["float32"] - estimates["float64"]
        # A chain whose Metropolis decision flipped on a rounding difference follows another path from there on:
        # its log-weight then differs by Monte Carlo noise, not by rounding.
        diverged = (chains["float32"] - chains["float64"]).abs() > DIVERGED
        rows[name] = {
            "mean_log_px_float64": float(estimates["float64"].mean()),
            "mean_difference": float(diff.mean()),
            "difference_se": float(diff.std() / math.sqrt(diff.numel())),
            "max_abs_difference": float(diff.abs().max()),
            "chains_diverged": int(diverged.sum()),
            "chains": int(diverged.numel()),
            "max_abs_difference_undiverged_digits": float(diff[~diverged.any(0)].abs().max())
            if (~diverged.any(0)).any()
            else None,
            "within_criterion": bool(diff.abs().max() <= CRITERION),
            "seconds": seconds,
        }
        print(
            f"{name}: float64 mean {rows[name]['mean_log_px_float64']:.3f}; float32 - float64: mean "
            f"{rows[name]['mean_difference']:+.2e} +- {rows[name]['difference_se']:.1e}, largest "
            f"{rows[name]['max_abs_difference']:.2e} nats ({'within' if rows[name]['within_criterion'] else 'OVER'} "
            f"{CRITERION}); chains on another path {rows[name]['chains_diverged']} of {rows[name]['chains']}; time float32 "
            f"{seconds['float32']:.1f} s, float64 {seconds['float64']:.1f} s",
            flush=True,
        )
    m = machine_info("cpu")
    print(f"machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)")
    result = {
        "machine": m,
        "digits": args.digits,
        "chains": args.chains,
        "steps": args.steps,
        "leapfrog": args.leapfrog,
        "criterion_nats": CRITERION,
        "models": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
