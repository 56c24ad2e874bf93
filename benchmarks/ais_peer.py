"""Benchmark (c) of docs/performance.md: logpx's AIS against an independent AIS written the way the common
research code writes it (the BDMC code accompanying Wu et al. 2017 and Grosse et al. 2015, as described in
their papers and READMEs; this is a fresh implementation of that description, not a copy):

- chains start at the prior; pi_t(z) = p(z) p(x | z)^(b_t);
- one step size per chain, adapted inside the run after every transition from that chain's running
  acceptance rate (x 1.02 above 0.65, x 0.98 below; within [1e-4, 0.5], starting at 0.01);
- each temperature: the weight increment from two evaluations of log pi at the old and new temperature, then
  one HMC trajectory of L leapfrog steps (gradient at the start and after every position update, clamped to
  +-10^4), then a Metropolis test that evaluates log pi at both ends again.

Both run on the same model, digits (the committed held-out split, binarised by the checkpoint's protocol),
chains, steps and leapfrog, alternated in one process (``timed_together``). Reported: wall time of each; the
floor (the bare forward + backward of the same shapes, times the evaluations each makes); each one's mean
log p estimate, the spread (sd) of its chains' log-weights, and the variance of its estimate across seeds;
and the cost of equal precision, time x that variance, as a ratio.

    python -m benchmarks.ais_peer [--checkpoint checkpoints/vae1-iwae50.safetensors] [--steps 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from logpx.families import LatentVariableModel
from logpx.io import binarize, load_checkpoint
from logpx.io.data import read_idx
from logpx.plan import AIS
from logpx.runtime import keep_freed_memory, set_thread_budget
from logpx.samplers import ais, schedule

from .machine import RESULTS_DIR, machine_info

FLOOR_EVALS = 100
DIGITS = Path("tests/data/mnist-valid200/valid200-images-idx3-ubyte.gz")


def peer_ais(
    model: LatentVariableModel, x: torch.Tensor, chains: int, betas: torch.Tensor, leapfrog: int, seed: int
) -> tuple[torch.Tensor, float]:
    """Chain log-weights ``[chains, B]`` and the mean acceptance, research-code style (module docstring)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    batch = x.shape[0]
    z = torch.randn(chains, batch, model.latent_dim, generator=g, device=x.device, dtype=x.dtype)
    eps = torch.full((chains, batch, 1), 0.01, device=x.device, dtype=x.dtype)
    accepted = torch.zeros(chains, batch, device=x.device, dtype=x.dtype)
    log_w = torch.zeros(chains, batch, dtype=torch.float64, device=x.device)

    def log_f(z: torch.Tensor, beta: float) -> torch.Tensor:
        return model.log_prior(z) + beta * model.log_likelihood(x, z)

    def grad_u(z: torch.Tensor, beta: float) -> torch.Tensor:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(-log_f(z, beta).sum(), z)
        return grad.clamp(-1e4, 1e4)

    for j in range(1, betas.shape[0]):
        b0, b1 = float(betas[j - 1]), float(betas[j])
        log_w += (log_f(z, b1) - log_f(z, b0)).double()
        v = torch.randn(z.shape, generator=g, device=x.device, dtype=x.dtype)
        z_new, v_new = z, v - 0.5 * eps * grad_u(z, b1)
        for i in range(leapfrog):
            z_new = z_new + eps * v_new
            if i < leapfrog - 1:
                v_new = v_new - eps * grad_u(z_new, b1)
        v_new = v_new - 0.5 * eps * grad_u(z_new, b1)
        h0 = -log_f(z, b1) + 0.5 * (v * v).sum(-1)
        h1 = -log_f(z_new, b1) + 0.5 * (v_new * v_new).sum(-1)
        accept = torch.rand(h0.shape, generator=g, device=x.device, dtype=x.dtype) < torch.exp(h0 - h1)
        z = torch.where(accept.unsqueeze(-1), z_new, z)
        accepted += accept
        rate = (accepted / j).unsqueeze(-1)
        eps = torch.where(rate > 0.65, eps * 1.02, eps * 0.98).clamp(1e-4, 0.5)
    return log_w, float(accepted.mean()) / (betas.shape[0] - 1)


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/vae1-iwae50.safetensors")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--digits", type=int, default=16)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternated, each a new seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (0: one per CPU)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    set_thread_budget(args.threads)
    keep_freed_memory()
    checkpoint = load_checkpoint(args.checkpoint, args.device)
    model = checkpoint.model
    assert isinstance(model, LatentVariableModel)
    images = torch.from_numpy(read_idx(DIGITS)[: args.digits].reshape(args.digits, -1).astype("float32") / 255.0)
    x = binarize(images, checkpoint.binarize, seed=checkpoint.binarize_seed).to(args.device)
    config = AIS(steps=args.steps, leapfrog=args.leapfrog)  # logpx's defaults: encoder start, sigmoid schedule
    betas = schedule(args.steps, config.schedule)

    def run_logpx(seed: int) -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            result = ais(model, x, args.chains, config, torch.Generator(device=args.device).manual_seed(seed))
        return result.log_w, float(result.acceptance.mean())

    def run_peer(seed: int) -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            return peer_ais(model, x, args.chains, betas, args.leapfrog, seed)

    z = torch.randn(args.chains, args.digits, model.latent_dim, device=args.device)

    def run_floor(_seed: int) -> tuple[torch.Tensor, float]:
        """FLOOR_EVALS chain-gradient evaluations of every chain: forward + backward of log p(x, z), same shapes."""
        for _ in range(FLOOR_EVALS):
            zz = z.detach().requires_grad_(True)
            torch.autograd.grad(model.log_joint(x, zz).sum(), zz)
        return z[..., 0], 0.0

    runs = {"logpx": run_logpx, "peer": run_peer, "floor": run_floor}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    estimates: dict[str, list[torch.Tensor]] = {name: [] for name in runs}
    spreads: dict[str, list[float]] = {name: [] for name in runs}
    acceptance: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, fn in runs.items():
            started = time.perf_counter()
            log_w, rate = fn(100 + repeat)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize(args.device)
            if repeat:
                seconds[name].append(time.perf_counter() - started)
                estimates[name].append(log_mean_exp(log_w))
                spreads[name].append(float(log_w.std(0).mean()))
                acceptance[name].append(rate)
        print(f"round {repeat}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items() if s), flush=True)

    # Chain-gradient evaluations each makes: logpx, a tuning pass of AIS_TUNE_CHAINS chains over its own
    # temperatures, then the estimate, 1 + (T - 1) L a pass (``AIS.evaluations``); the peer, L + 1 gradients a
    # temperature (plus 4 forward-only evaluations, not counted).
    t, tuned = args.steps, config.tuning_temperatures(args.chains)
    evals = {
        "logpx": args.digits * config.evaluations(args.chains),
        "peer": args.chains * args.digits * t * (args.leapfrog + 1),
    }
    floor_per_eval = statistics.median(seconds["floor"]) / (FLOOR_EVALS * args.chains * args.digits)
    summary: dict[str, dict[str, float]] = {}
    for name in ("logpx", "peer"):
        stacked = torch.stack(estimates[name])  # [repeats, B]
        summary[name] = {
            "median_s": statistics.median(seconds[name]),
            "floor_s": evals[name] * floor_per_eval,
            "mean_log_px": float(stacked.mean()),
            "log_weight_sd": statistics.mean(spreads[name]),
            "estimate_variance_across_seeds": float(stacked.var(0).mean()) if args.repeats > 1 else float("nan"),
            "acceptance": statistics.mean(acceptance[name]),
        }
        summary[name]["ratio_to_floor"] = summary[name]["median_s"] / summary[name]["floor_s"]
    time_ratio = summary["logpx"]["median_s"] / summary["peer"]["median_s"]
    precision_cost = (summary["logpx"]["median_s"] * summary["logpx"]["estimate_variance_across_seeds"]) / (
        summary["peer"]["median_s"] * summary["peer"]["estimate_variance_across_seeds"]
    )
    m = machine_info(args.device)
    print(
        f"machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), {args.device}"
    )
    print(
        f"{Path(args.checkpoint).name}: {args.digits} digits x {args.chains} chains, {t} steps, leapfrog {args.leapfrog}"
    )
    for name, s in summary.items():
        print(
            f"  {name}: {s['median_s']:.2f} s ({s['ratio_to_floor']:.2f}x its floor), mean log p {s['mean_log_px']:.3f}, "
            f"chain log-weight sd {s['log_weight_sd']:.3f}, variance across seeds {s['estimate_variance_across_seeds']:.4f}, "
            f"acceptance {s['acceptance']:.2f}"
        )
    print(
        f"  wall time logpx / peer: {time_ratio:.2f}; time x variance (cost of equal precision) logpx / peer: {precision_cost:.3f}"
    )
    result = {
        "machine": m,
        "checkpoint": Path(args.checkpoint).name,
        "digits": args.digits,
        "chains": args.chains,
        "steps": t,
        "leapfrog": args.leapfrog,
        "repeats": args.repeats,
        "tuning_temperatures": tuned,
        "summary": summary,
        "seconds": seconds,
        "ratio_wall_time_logpx_to_peer": time_ratio,
        "ratio_time_x_variance_logpx_to_peer": precision_cost,
    }
    out = Path(args.out or RESULTS_DIR / f"ais-peer-{args.device.split(':')[0]}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")
    return result


if __name__ == "__main__":
    main()
