"""What a certified AIS setting costs and buys on a shipped model (docs/estimators.md, "Certified AIS").

1. ``certify`` at the tolerance (16 simulated inputs, 16 chains each way): every trial with its gap, bound and time.
2. The certified setting against a schedule 4x as long on held-out digits (the committed 200-digit split,
   binarised by the checkpoint's protocol), same chains: the mean difference must be within the tolerance.
3. Digits per second at the certified setting with 100 chains (the chains the verdict asks of uncertified AIS),
   against the same with the advised uncertified setting (1,000 steps), timed alternately in this process.

    python -m benchmarks.certify [--checkpoint checkpoints/vae1-iwae50.safetensors] [--tolerance 0.1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from logpx.certificate import Certificate, resolve, weakest
from logpx.families import LatentVariableModel
from logpx.io import binarize, load_checkpoint
from logpx.io.data import read_idx
from logpx.plan import AIS, Plan
from logpx.samplers import Certification, certify, run_plan

from .machine import RESULTS_DIR, machine_info, timed_together

DIGITS = Path("tests/data/mnist-valid200/valid200-images-idx3-ubyte.gz")


def resolve_chosen(trials: tuple[Certificate, ...], tolerance: float) -> Certificate | None:
    """The certificate ``steps: auto`` would choose among ``trials``."""
    setting = trials[0].setting
    auto = f"ais:auto:{setting.leapfrog}:{setting.init}:{setting.schedule}:{tolerance}"
    chosen = resolve(Plan.parse(f"iwae:1@{auto}"), trials).entries[0].sampler
    return weakest(t for t in trials if t.setting == chosen)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/vae1-iwae50.safetensors")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--digits", type=int, default=16, help="held-out digits for the 4x check")
    parser.add_argument("--chains", type=int, default=16, help="chains of the 4x check")
    parser.add_argument("--speed-digits", type=int, default=2, help="digits per timed run at 100 chains")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--reuse",
        default=None,
        help="a previous run's JSON: reuse its certificates (as the service does) instead of certifying",
    )
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint, args.device)
    model = checkpoint.model
    assert isinstance(model, LatentVariableModel)

    started = time.monotonic()
    if args.reuse:
        saved = json.loads(Path(args.reuse).read_text())
        trials = tuple(Certificate.from_json(t) for t in saved["trials"])
        assert all(t.checkpoint == checkpoint.sha256 for t in trials), "those certificates are of another file"
        found = Certification(args.tolerance, resolve_chosen(trials, args.tolerance), trials)
    else:
        found = certify(
            model,
            args.tolerance,
            checkpoint=checkpoint.sha256,
            on_trial=lambda c: print(
                f"  {c.setting}: gap {c.mean_gap:.4f} +- {c.gap_std_err:.4f}, bound {c.gap_bound:.4f}, {c.seconds:.1f} s",
                flush=True,
            ),
        )
    certify_s = time.monotonic() - started
    if found.chosen is None:
        raise SystemExit(f"nothing up to the largest trial meets {args.tolerance} nats")
    setting = found.chosen.setting
    print(f"certified {setting} for {args.tolerance:g} nats in {certify_s:.0f} s", flush=True)

    images = torch.from_numpy(read_idx(DIGITS)[: args.digits].reshape(args.digits, -1).astype("float32") / 255.0)
    x = binarize(images, checkpoint.binarize, seed=checkpoint.binarize_seed).to(args.device)
    longer = AIS(
        steps=setting.temperatures * 4, leapfrog=setting.leapfrog, init=setting.init, schedule=setting.schedule
    )
    auto = f"ais:auto:{setting.leapfrog}:{setting.init}:{setting.schedule}:{args.tolerance}"
    plan = resolve(Plan.parse(f"iwae:{args.chains}@{auto}"), found.trials)
    values = {}
    for name, p in (("certified", plan), ("4x", Plan.of(f"iwae:{args.chains}", sampler=longer))):
        t = time.monotonic()
        (outcome,) = run_plan(
            model, x, p, torch.Generator(device=args.device).manual_seed(1), certificates=found.trials
        )
        est = outcome.estimate
        values[name] = est
        levels = [v.level.value for v in est.verdicts]
        print(
            f"  {p}: mean {float(est.log_px.mean()):.3f} over {args.digits} digits in {time.monotonic() - t:.0f} s; "
            f"verdicts {', '.join(f'{levels.count(v)} {v}' for v in dict.fromkeys(levels))}",
            flush=True,
        )
    diff = values["4x"].log_px - values["certified"].log_px
    variance = values["4x"].std_err ** 2 + values["certified"].std_err ** 2
    reliable = torch.tensor([v.level.value == "reliable" for v in values["certified"].verdicts])
    split = {}
    for name, rows in (("all", torch.ones_like(reliable)), ("reliable", reliable), ("caution", ~reliable)):
        n = int(rows.sum())
        if n:
            split[name] = (n, float(diff[rows].mean()), float(variance[rows].sum().sqrt()) / n)
            print(
                f"4x longer minus certified, {name} ({n} digits): {split[name][1]:.4f} +- {split[name][2]:.4f} nats "
                f"(tolerance {args.tolerance:g})"
            )
    diff_se = split["all"][2]

    fast = x[: args.speed_digits]
    advised = AIS(steps=1000)

    def run(sampler: AIS) -> None:
        run_plan(model, fast, Plan.of("iwae:100", sampler=sampler), torch.Generator(device=args.device).manual_seed(2))

    times = timed_together(
        {"certified": lambda: run(setting), "advised": lambda: run(advised)}, repeats=args.repeats, device=args.device
    )
    speed = {name: args.speed_digits / t["median_s"] for name, t in times.items()}
    print(
        f"100 chains: {speed['certified']:.3f} digits/s at {setting}, {speed['advised']:.3f} at {advised} "
        f"({speed['certified'] / speed['advised']:.2f}x)"
    )
    result: dict[str, object] = {
        "machine": machine_info(args.device),
        "checkpoint": args.checkpoint,
        "tolerance": args.tolerance,
        "certify_s": certify_s,
        "trials": [t.to_json() for t in found.trials],
        "certified": str(setting),
        "check": {
            "digits": args.digits,
            "chains": args.chains,
            "certified_mean": float(values["certified"].log_px.mean()),
            "longer_mean": float(values["4x"].log_px.mean()),
            "difference": float(diff.mean()),
            "difference_se": diff_se,
            "by_verdict": {k: {"digits": n, "difference": d, "se": e} for k, (n, d, e) in split.items()},
        },
        "digits_per_s_100_chains": speed,
    }
    out = Path(args.out or RESULTS_DIR / f"certify-{args.device.split(':')[0]}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")
    return result


if __name__ == "__main__":
    main()
