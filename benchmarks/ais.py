"""AIS cost per chain-step against the model's own forward-plus-backward rate on the same shapes.

An AIS step with L leapfrog steps evaluates log pi_b and its gradient L + 1 times (L leapfrog
evaluations, plus one at the new temperature). The baseline, timed in the same script and alternated
with AIS, is the bare work those evaluations need: ``log_joint(x, z) - log_q(x, z)`` on latents of the
same ``[chains, B, d]`` shape, summed and differentiated in z. The ratio (AIS time per evaluation /
baseline time per evaluation) is the overhead of everything else: HMC bookkeeping, the Metropolis test,
the tuning pass (counted in AIS's evaluations), Python.

    python -m benchmarks.ais [--checkpoint checkpoints/vae1-iwae50.safetensors] [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from logpx.families import LatentVariableModel
from logpx.io import load_checkpoint
from logpx.plan import AIS, AIS_TUNE_CHAINS
from logpx.runtime import keep_freed_memory
from logpx.samplers import ais

from .machine import RESULTS_DIR, machine_info, timed_together


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/vae1-iwae50.safetensors")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16, help="inputs per AIS call")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS_DIR / "ais-cpu.json"))
    args = parser.parse_args(argv)
    keep_freed_memory()
    model = load_checkpoint(args.checkpoint, args.device).model
    assert isinstance(model, LatentVariableModel)
    g = torch.Generator(device=args.device).manual_seed(0)
    x = (torch.rand(args.batch, model.input_dim, generator=g, device=args.device) < 0.2).float()
    config = AIS(steps=args.steps, leapfrog=args.leapfrog)
    # The work unit: the gradient evaluations of one ais() call as AIS made them until 2026-11-30 (tuning and
    # estimating passes, one initial evaluation each, then T - 1 transitions of L + 1 evaluations: the L leapfrog
    # steps and the state at the new temperature). The state at a new temperature is now a sum of the two terms
    # already at hand (logpx.samplers.ais._Target), so a transition evaluates the model L times.
    evals_per_pass = 1 + (args.steps - 1) * (args.leapfrog + 1)
    chain_evals = (AIS_TUNE_CHAINS + args.chains) * args.batch * evals_per_pass
    made = config.evaluations(args.chains) * args.batch  # what it makes now (``AIS.evaluations``, exact)
    z = torch.randn(args.chains + AIS_TUNE_CHAINS, args.batch, model.latent_dim, generator=g, device=args.device)

    def run_ais() -> None:
        with torch.no_grad():
            ais(model, x, args.chains, config, torch.Generator(device=args.device).manual_seed(1))

    def run_baseline() -> None:
        for _ in range(evals_per_pass):
            zz = z.detach().requires_grad_(True)
            log_q = model.log_q(x, zz)
            total = (model.log_joint(x, zz) - log_q).sum() + log_q.sum()
            torch.autograd.grad(total, zz)

    times = timed_together({"ais": run_ais, "forward_backward": run_baseline}, args.repeats, args.device)
    per_eval = {name: t["median_s"] / chain_evals for name, t in times.items()}
    ratio = per_eval["ais"] / per_eval["forward_backward"]
    overhead = ratio * chain_evals / made  # per evaluation AIS now makes
    result = {
        "machine": machine_info(args.device),
        "checkpoint": Path(args.checkpoint).name,
        "batch": args.batch,
        "chains": args.chains,
        "tune_chains": AIS_TUNE_CHAINS,
        "steps": args.steps,
        "leapfrog": args.leapfrog,
        "times": times,
        "us_per_chain_gradient_eval": {name: 1e6 * v for name, v in per_eval.items()},
        "us_per_chain_step_ais": 1e6
        * times["ais"]["median_s"]
        / ((AIS_TUNE_CHAINS + args.chains) * args.batch * (args.steps - 1)),
        "ratio_ais_to_forward_backward": ratio,
        "evaluations_made": made,
        "ratio_per_evaluation_made": overhead,
    }
    m = result["machine"]
    print(
        f"machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), device {args.device}"
    )
    print(
        f"{Path(args.checkpoint).name}: {args.batch} inputs x ({args.chains} + {AIS_TUNE_CHAINS} tuning) chains, "
        f"{args.steps} steps, leapfrog {args.leapfrog}"
    )
    print(
        f"  per chain gradient evaluation: AIS {1e6 * per_eval['ais']:.2f} us, bare forward+backward "
        f"{1e6 * per_eval['forward_backward']:.2f} us, ratio {ratio:.2f} (target <= 1.5; the floor counts L + 1 "
        f"evaluations a step); per evaluation AIS makes (L a step): {overhead:.2f}"
    )
    print(f"  per chain-step (L + 1 evaluations): {result['us_per_chain_step_ais']:.1f} us")
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
