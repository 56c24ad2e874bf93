"""Score a checkpoint on a data set with any estimators of the core.

Usage:
    logpx evaluate CHECKPOINT --data DIR [--split valid] [--limit 1000] \
        [--estimators elbo:5000 iwae:5000 jvi:5000:1] [--seed 0] [--json OUT]
    logpx evaluate CHECKPOINT --images FILE --labels FILE [--valid N] ...

The data options are `logpx train`'s, and the held-out split is the one the checkpoint records
(`--valid` at training), so `--split valid` scores exactly the images training held out. All
estimators run on the same draw per image (common random numbers: an estimator with k samples uses
the first k). Images are binarised as the service binarises them (the checkpoint's protocol: each
image's own draws under its binarisation seed), so the figures agree with the service image for image.
Prints, per estimator, the mean log p(x) over images with its standard error (spread across images)
and the mean Monte Carlo standard error of a single image's estimate, then a diagnostics summary.
Each long phase (importance sampling, AIS, BDMC) prints its expected time first and shows its
progress; the thread setting in force is printed with it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from collections import Counter
from collections.abc import Iterable

import torch
from tqdm import tqdm

from ..estimators import Level, Verdict, bits_offset, bits_per_dim, estimate, khat_threshold, point_estimate
from ..families import Classifier, LatentVariableModel, LinearGaussian, predictive_summary
from ..families.bbb import expected_calibration_error
from ..io import Checkpoint, binarize, held_out_count, load_checkpoint, load_idx_dataset, split_train_valid
from ..io.data import VALID_SIZE
from ..plan import AIS, Cost, EstimatorSpec, Plan, WeightDraws, parse_spec
from ..runtime import ROWS_PER_THREAD, keep_freed_memory, set_thread_budget, thread_budget, thread_text
from ..samplers import Speed, bdmc, duration, measure, run_plan

PROG = "logpx evaluate"


class Verdicts:
    """The verdicts of one estimator over a data set: counts per level, and each distinct advice once."""

    def __init__(self) -> None:
        self.levels: Counter[Level] = Counter()
        self.advice: dict[str, Plan | None] = {}

    def add(self, verdicts: Iterable[Verdict]) -> None:
        for v in verdicts:
            self.levels[v.level] += 1
            if v.advice:
                self.advice.setdefault(v.advice, v.rerun)

    def counts(self) -> dict[str, int]:
        return {level.value: self.levels[level] for level in Level}

    def text(self) -> str:
        return ", ".join(f"{self.levels[level]} {level}" for level in Level)


def print_advice(
    args: argparse.Namespace, advice: dict[str, Plan | None], speed: Speed | None = None, images: int = 0
) -> list[str]:
    """Each distinct advice once, and where it names an AIS plan, the ``logpx evaluate`` command that runs
    it on the same data with its BDMC check, with its expected time at ``speed`` (the model's, measured
    here) over the ``images`` just scored; returns the texts (for the JSON summary)."""
    for text, rerun in advice.items():
        print(f"  advice: {text}")
        if rerun is None or not isinstance(rerun.entries[0].sampler, AIS):
            continue
        sampler, chains = rerun.entries[0].sampler, rerun.entries[0].spec.k
        estimators = " ".join(str(s) for s in args.estimators)
        print(
            f"    run: logpx evaluate {args.checkpoint} {data_args(args)} --split {args.split} --limit {images} "
            f"--estimators {estimators} --ais {sampler.temperatures} --ais-chains {chains} "
            f"--ais-leapfrog {sampler.leapfrog} --ais-limit {args.ais_limit} --bdmc {BDMC_INPUTS}"
        )
        if speed is not None:
            ais_images = min(args.ais_limit, images)
            evals = Plan.of(*args.estimators).cost(images).evaluations
            ais_evals = rerun.cost(ais_images).evaluations + BDMC_INPUTS * sampler.bdmc_evaluations(chains)
            seconds = speed.seconds(Cost(evals + ais_evals, ais_evals, 0, 0))
            print(
                f"    expected: {duration(seconds)} here (AIS on the first {ais_images} images, BDMC on {BDMC_INPUTS})"
            )
    return list(advice)


BDMC_INPUTS = 8  # simulated inputs of the advised BDMC check: enough for the gap's mean, at a few minutes


def data_args(args: argparse.Namespace) -> str:
    """The options that name the data, as given: for commands that run again on the same images."""
    where = f"--images {shlex.quote(args.images)} --labels {shlex.quote(args.labels)}" if args.images else ""
    where = where or f"--data {shlex.quote(args.data)}"
    return where + (f" --valid {args.valid:g}" if args.valid is not None else "")


def _spec_arg(text: str) -> EstimatorSpec:
    try:
        return parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def evaluate_classifier(
    args: argparse.Namespace, model: Classifier, ckpt: Checkpoint, x: torch.Tensor, labels: torch.Tensor
) -> dict[str, object]:
    """Bayesian classifiers: accuracy, ECE, predictive log-likelihood with k_ref draws, and iwae / jvi at
    small k against it (replicates cut from the same draws, so the comparison costs no extra draws)."""
    k_ref = max(s.k for s in args.estimators)
    generator = torch.Generator().manual_seed(args.seed)
    per_draw_parts, probs_parts, entropy_parts = [], [], []
    with torch.inference_mode():
        for xb, yb in tqdm(
            list(zip(x.split(args.batch_size), labels.split(args.batch_size))), desc="evaluating", unit="batch"
        ):
            log_probs, _ = model.sample_forward(xb, k_ref, generator)
            summary = predictive_summary(log_probs)
            probs_parts.append(summary.probs)
            entropy_parts.append(summary.entropy)
            per_draw_parts.append(model.label_log_likelihoods(log_probs, yb).double())
    per_draw = torch.cat(per_draw_parts, dim=1)  # [k_ref, N]
    probs = torch.cat(probs_parts)
    n = x.shape[0]
    # The predictive log-likelihood: a Monte Carlo mean over weight draws, with its verdict per image.
    reference_est = estimate(per_draw, EstimatorSpec("iwae", k_ref), discrete=True, sampler=WeightDraws())
    reference = reference_est.log_px  # [N]
    verdicts = Verdicts()
    verdicts.add(reference_est.verdicts)
    small_k: dict[int, dict[str, dict[str, float | int]]] = {}
    summary_out: dict[str, object] = {
        "checkpoint": args.checkpoint,
        "sha256": ckpt.sha256,
        "split": args.split,
        "images": n,
        "seed": args.seed,
        "k": k_ref,
        "accuracy": float((probs.argmax(-1) == labels).double().mean()),
        "ece": expected_calibration_error(probs, labels),
        "log_lik": float(reference.mean()),
        "log_lik_se_over_images": float(reference.std() / math.sqrt(n)),
        "log_lik_verdicts": verdicts.counts(),
        "mean_entropy": float(torch.cat(entropy_parts).mean()),
        "deterministic_baseline": ckpt.metadata.get("deterministic_baseline"),
        "small_k": small_k,
    }
    print(f"{args.checkpoint}: {n} images of the {args.split} split, k = {k_ref} weight draws, seed {args.seed}")
    print(
        f"  accuracy {summary_out['accuracy']:.4f}, ECE {summary_out['ece']:.4f}, predictive log-likelihood "
        f"{summary_out['log_lik']:.4f} +- {summary_out['log_lik_se_over_images']:.4f} (images); verdicts: "
        f"{verdicts.text()}"
    )
    summary_out["advice"] = print_advice(args, verdicts.advice)
    for k in args.small_k:
        replicates = k_ref // k
        blocks = (
            per_draw[: replicates * k].reshape(replicates, k, n).transpose(0, 1).reshape(k, replicates * n)
        )  # [k, R*N]
        errors: dict[str, dict[str, float | int]] = {}
        abs_err = {}
        for name, spec in (("iwae", EstimatorSpec("iwae", k)), ("jvi", EstimatorSpec("jvi", k, 1))):
            value = point_estimate(blocks, spec).value.reshape(replicates, n).mean(0)  # [N]: mean over replicates
            err = value - reference
            abs_err[name] = err.abs()
            errors[name] = {
                "mean_error": float(err.mean()),
                "se": float(err.std() / math.sqrt(n)),
                "mean_abs_error": float(err.abs().mean()),
            }
        gain = abs_err["iwae"] - abs_err["jvi"]  # [N]: how much closer jvi lies, per input
        decided = gain.abs() > 1e-9
        errors["gain"] = {
            "mean": float(gain.mean()),
            "se": float(gain.std() / math.sqrt(n)),
            "jvi_closer": int((gain > 1e-9).sum()),
            "iwae_closer": int((gain < -1e-9).sum()),
            "ties": int((~decided).sum()),
        }
        small_k[k] = errors
        print(
            f"  k={k:>3}: iwae - ref {errors['iwae']['mean_error']:+.5f} +- {errors['iwae']['se']:.5f}, "
            f"jvi - ref {errors['jvi']['mean_error']:+.5f} +- {errors['jvi']['se']:.5f}; "
            f"|error| lower with jvi by {float(gain.mean()):.5f} +- {float(gain.std() / math.sqrt(n)):.5f}, "
            f"jvi closer on {errors['gain']['jvi_closer']} inputs, iwae on {errors['gain']['iwae_closer']}"
        )
    if summary_out["deterministic_baseline"]:
        print(f"  deterministic network, same size and training: {summary_out['deterministic_baseline']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary_out, f, indent=2)
    return summary_out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a logpx .safetensors checkpoint")
    parser.add_argument("--data", default="", help="directory with IDX files, as `logpx train --data` takes")
    parser.add_argument("--images", default="", help="an IDX image file of any name (instead of --data)")
    parser.add_argument("--labels", default="", help="its IDX label file (with --images)")
    parser.add_argument(
        "--split",
        default="valid",
        help="valid: the images the checkpoint records as held out of its training file (the last --valid); "
        "train: the rest; any other PREFIX: all of PREFIX-images-idx3-ubyte in --data",
    )
    parser.add_argument(
        "--valid",
        type=float,
        default=None,
        help="images held out, as `logpx train --valid` (default: the count the checkpoint records, else 10,000)",
    )
    parser.add_argument(
        "--small-k",
        type=int,
        nargs="+",
        default=[2, 5, 10, 20],
        help="bbb: k for the iwae / jvi comparison against the largest k",
    )
    parser.add_argument("--limit", type=int, default=1000, help="first N images of the split (0: all)")
    parser.add_argument(
        "--estimators",
        type=_spec_arg,
        nargs="+",
        metavar="NAME:K[:ORDER]",
        default=[parse_spec(s) for s in ("elbo:5000", "iwae:5000", "jvi:5000:1")],
        help="estimators on common random numbers (default: elbo:5000 iwae:5000 jvi:5000:1)",
    )
    parser.add_argument("--batch-size", type=int, default=20, help="images per forward pass (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="most torch threads (0: one per usable CPU); an AIS pass uses one per "
        f"{ROWS_PER_THREAD} chains x images, fewer than that on small batches",
    )
    parser.add_argument("--json", default=None, help="write the summary here")
    parser.add_argument(
        "--ais",
        type=int,
        default=0,
        metavar="STEPS",
        help="also run AIS (encoder start, sigmoid schedule) with this many steps (0: no AIS)",
    )
    parser.add_argument("--ais-chains", type=int, default=16, help="AIS chains per image (default 16)")
    parser.add_argument("--ais-leapfrog", type=int, default=10, help="AIS leapfrog steps per HMC move (default 10)")
    parser.add_argument("--ais-limit", type=int, default=50, help="AIS on the first N images only (default 50)")
    parser.add_argument(
        "--bdmc",
        type=int,
        default=0,
        metavar="N",
        help="with --ais: BDMC on N inputs simulated from the model, the setting's gap (default 0)",
    )
    args = parser.parse_args(argv)
    if not (args.data or args.images):
        parser.error("--data or --images (with --labels) is required")
    if bool(args.images) != bool(args.labels):
        parser.error("--images and --labels go together")
    return args


def load_split(args: argparse.Namespace, ckpt: Checkpoint) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    """The images and labels of ``--split``, cut to ``--limit``, and a description. ``valid`` and ``train``
    split the training file where the checkpoint says its training split it (``dataset.valid_images``); a
    file other than the one the checkpoint records is split the same way, with a note that it differs."""
    held = args.split in ("valid", "train")
    try:
        x, labels, dataset = load_idx_dataset(
            args.data or ".",
            "train" if held else args.split,
            images=args.images or None,
            labels=args.labels or None,
        )
    except (OSError, ValueError) as exc:  # the message names the directory and the file
        raise SystemExit(f"error: {exc}") from None
    if x.shape[1] != math.prod(ckpt.metadata["input_shape"]):
        raise SystemExit(
            f"error: {args.images or args.data} holds images of {x.shape[1]} values, "
            f"the model takes {ckpt.metadata['input_shape']}"
        )
    if held:
        recorded = ckpt.metadata.get("dataset") or {}
        count = int(recorded.get("valid_images", VALID_SIZE)) if args.valid is None else None
        try:
            count = held_out_count(x.shape[0], args.valid) if count is None else count
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        if count >= x.shape[0]:
            raise SystemExit(
                f"error: the checkpoint holds out {count} images but the file has {x.shape[0]}; give --valid"
            )
        if recorded.get("sha256") and recorded["sha256"] != dataset["sha256"]:
            print(
                f"note: {dataset['file']} is not the file this checkpoint was trained on (its sha256 differs from "
                f"the recorded {str(recorded['sha256'])[:12]}); its last {count} images are not the model's held-out set"
            )
        dataset["valid_images"] = count
        pick = (
            split_train_valid(x, count)[args.split == "valid"],
            split_train_valid(labels, count)[args.split == "valid"],
        )
        x, labels = pick
    if args.limit:
        x, labels = x[: args.limit], labels[: args.limit]
    return x, labels, dataset


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    set_thread_budget(args.threads)
    keep_freed_memory()
    try:  # CheckpointError is a ValueError
        ckpt = load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {args.checkpoint}: {exc}") from None
    x, labels, dataset = load_split(args, ckpt)
    model = ckpt.model
    if isinstance(model, Classifier):
        return evaluate_classifier(args, model, ckpt, x, labels)
    assert isinstance(model, LatentVariableModel)
    # The checkpoint's binarisation, as the service applies it: a function of each image and the protocol
    # seed, so that these figures and the service's agree image for image.
    binarization = ckpt.binarize if ckpt.binarize != "resample" else "sample"
    x = binarize(x, binarization, seed=ckpt.binarize_seed)
    plan = Plan.of(*args.estimators)
    k_draw = max(s.k for s in args.estimators)
    generator = torch.Generator().manual_seed(args.seed)
    speed = measure(model, torch.Generator().manual_seed(args.seed))
    n = x.shape[0]
    print(
        f"{args.checkpoint}: {n} images of the {args.split} split, seed {args.seed}, binarised by {binarization} "
        f"(seed {ckpt.binarize_seed}); {thread_text()}"
    )
    print(f"importance sampling ({plan}): expected {duration(speed.seconds(plan.cost(n)))}")
    values: dict[str, list[torch.Tensor]] = {}
    std_errs: dict[str, list[torch.Tensor]] = {}
    verdicts: dict[str, Verdicts] = {}
    diag_parts: list[tuple[torch.Tensor, ...]] = []
    exact: list[torch.Tensor] = []
    with torch.inference_mode():
        for xb in tqdm(x.split(args.batch_size), desc="importance", unit="batch"):
            for i, outcome in enumerate(run_plan(model, xb, plan, generator)):
                spec, est = outcome.entry.spec, outcome.estimate
                name = f"{spec.name}-{spec.k}" + (f"-m{spec.order}" if spec.is_jackknife else "")
                values.setdefault(name, []).append(est.log_px)
                std_errs.setdefault(name, []).append(est.std_err)
                verdicts.setdefault(name, Verdicts()).add(est.verdicts)
                if spec.k == k_draw and i == len(args.estimators) - 1:
                    diag_parts.append(tuple(est.diagnostics))
            if isinstance(model, LinearGaussian):
                exact.append(model.exact_log_px(xb).double())

    per_estimator: dict[str, dict[str, float]] = {}
    summary: dict[str, object] = {
        "checkpoint": args.checkpoint,
        "sha256": ckpt.sha256,
        "split": args.split,
        "images": n,
        "dataset_sha256": dataset["sha256"],
        "held_out": dataset.get("valid_images"),
        "seed": args.seed,
        "binarization": binarization,
        "binarize_seed": ckpt.binarize_seed,
        "threads": thread_budget(),
        "estimators": per_estimator,
    }
    offset = bits_offset(ckpt.domain)  # None: a density on real values has no bits-per-dimension reading
    for name, parts in values.items():
        v = torch.cat(parts)
        se_images = float(v.std() / math.sqrt(n)) if n > 1 else float("nan")
        mc = float(torch.cat(std_errs[name]).pow(2).mean().sqrt())
        per_estimator[name] = {
            "mean": float(v.mean()),
            "se_over_images": se_images,
            "rms_mc_std_err": mc,
            "mc_se_of_mean": mc / math.sqrt(n),
            **{f"verdict_{level}": float(count) for level, count in verdicts[name].counts().items()},
        }
        bits = ""
        if offset is not None:  # linear in log p(x): the mean's bits per dimension is the mean of the images'
            per_estimator[name]["bits_per_dim"] = float(bits_per_dim(v.mean(), model.input_dim, offset))
            bits = f" ({per_estimator[name]['bits_per_dim']:.4f} bits/dim)"
        print(
            f"  {name:>14}: mean log p(x) = {float(v.mean()):.3f}{bits} +- {se_images:.3f} (images), "
            f"Monte Carlo se per image {mc:.4f}, of the mean {mc / math.sqrt(n):.4f}; verdicts: {verdicts[name].text()}"
        )
    if exact:
        e = torch.cat(exact)
        summary["exact_log_px"] = float(e.mean())
        print(f"  {'exact':>14}: mean log p(x) = {float(e.mean()):.3f}")
    if diag_parts:
        d = [torch.cat(col) for col in zip(*diag_parts)]
        ess_fraction, k_hat = d[1], d[4]
        limit = khat_threshold(k_draw)
        fitted = k_hat[~torch.isnan(k_hat)]  # nan: too few draws in the tail for a Pareto fit
        median = float(fitted.median()) if fitted.numel() else None
        over = float((fitted > limit).double().mean()) if fitted.numel() else None
        diag = {
            "mean_ess_fraction": float(ess_fraction.mean()),
            "images_with_khat": int(fitted.numel()),
            "median_khat": median,
            "fraction_khat_over_threshold": over,
            "khat_threshold": limit,
        }
        summary["diagnostics"] = diag
        if median is not None and over is not None:
            khat_text = (
                f"median k-hat {median:.3f} ({fitted.numel()} of {k_hat.numel()} images fitted), "
                f"{100 * over:.1f}% of those over k-hat {limit:.2f}"
            )
        else:
            khat_text = f"k-hat not estimable at k={k_draw} (too few draws in the tail; raise k)"
        print(f"  diagnostics at k={k_draw}: mean ESS fraction {diag['mean_ess_fraction']:.4f}, {khat_text}")
    advice: dict[str, Plan | None] = {}
    for per in verdicts.values():
        for text, rerun in per.advice.items():
            advice.setdefault(text, rerun)
    summary["advice"] = print_advice(args, advice, speed, n)
    if args.ais:
        iwae_name = f"iwae-{k_draw}"
        iwae_values = torch.cat(values[iwae_name]) if iwae_name in values else None
        summary.update(evaluate_ais(args, model, x[: args.ais_limit], iwae_values))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def evaluate_ais(
    args: argparse.Namespace, model: LatentVariableModel, x: torch.Tensor, iwae_values: torch.Tensor | None
) -> dict[str, object]:
    """AIS on ``x`` (its mean log p(x), and its gap to IWAE on the same images), and BDMC on simulated
    inputs: how far the IWAE figures lie from the evidence, and how far AIS itself may. Each phase says
    its expected time first and shows its progress by temperature (one AIS step of every chain)."""
    config = AIS(steps=args.ais, leapfrog=args.ais_leapfrog)
    plan = Plan.of(EstimatorSpec("iwae", args.ais_chains), sampler=config)
    generator = torch.Generator().manual_seed(args.seed + 1)
    batches = x.split(args.batch_size)
    speed = measure(model, torch.Generator().manual_seed(args.seed))
    print(
        f"AIS ({plan.entries[0]}) on {x.shape[0]} images: expected {duration(speed.seconds(plan.cost(x.shape[0])))}; "
        f"{thread_text()}"
    )
    parts, errs, accept = [], [], []
    verdicts = Verdicts()
    # Per batch: the tuning pass and the estimating pass, each over every temperature.
    with torch.no_grad(), tqdm(total=2 * config.temperatures * len(batches), desc="ais", unit="temperature") as bar:
        for xb in batches:
            ((_, est, stats),) = run_plan(model, xb, plan, generator, check=lambda: bar.update(1))
            assert stats is not None
            verdicts.add(est.verdicts)
            parts.append(est.log_px)
            errs.append(est.std_err)
            accept.append(stats.acceptance)
    values = torch.cat(parts).double()
    n = values.shape[0]
    ais_out: dict[str, object] = {
        "steps": config.temperatures,
        "leapfrog": config.leapfrog,
        "chains": args.ais_chains,
        "init": config.init,
        "schedule": config.schedule,
        "images": n,
        "mean": float(values.mean()),
        "se_over_images": float(values.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "mc_se_of_mean": float(torch.cat(errs).pow(2).mean().sqrt()) / math.sqrt(n),
        "mean_acceptance": float(torch.cat(accept).mean()),
        "verdicts": verdicts.counts(),
    }
    out: dict[str, object] = {"ais": ais_out}
    print(
        f"  {'ais-' + str(config.temperatures):>14}: mean log p(x) = {float(values.mean()):.3f} over the first {n} images "
        f"({args.ais_chains} chains, leapfrog {config.leapfrog}); verdicts: {verdicts.text()}"
    )
    ais_out["advice"] = print_advice(args, verdicts.advice, speed, n)
    if iwae_values is not None:
        gap = values - iwae_values[:n].double()
        ais_out["minus_iwae"] = {
            "mean": float(gap.mean()),
            "se": float(gap.std() / math.sqrt(n)) if n > 1 else float("nan"),
        }
        print(f"  AIS - IWAE on the same images: {float(gap.mean()):+.3f} +- {float(gap.std() / math.sqrt(n)):.3f}")
    if args.bdmc:
        evals = args.bdmc * config.bdmc_evaluations(args.ais_chains)
        seconds = speed.seconds(Cost(evaluations=evals, gradient_evals=evals, samples=0, jackknife=0))
        print(f"BDMC on {args.bdmc} simulated inputs: expected {duration(seconds)}; {thread_text()}")
        # The tuning pass, then forward and reverse AIS, each over every temperature.
        with torch.no_grad(), tqdm(total=3 * config.temperatures, desc="bdmc", unit="temperature") as bar:
            bounds = bdmc(model, args.bdmc, args.ais_chains, config, generator, check_fn=lambda: bar.update(1))
        gaps = (bounds.upper - bounds.lower).double()
        out["bdmc"] = {
            "inputs": args.bdmc,
            "mean_lower": float(bounds.lower.mean()),
            "mean_upper": float(bounds.upper.mean()),
            "mean_gap": float(gaps.mean()),
            "max_gap": float(gaps.max()),
        }
        print(
            f"  BDMC on {args.bdmc} simulated inputs: mean gap {float(gaps.mean()):.3f} nats (max {float(gaps.max()):.3f})"
        )
    return out


if __name__ == "__main__":
    main()
