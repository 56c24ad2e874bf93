"""Train a model and write a checkpoint.

Usage:
    logpx train --data DIR --family vae --layers 1 --objective iwae --k 50 --epochs 10 \
        --out checkpoints/vae1-iwae50.safetensors
    logpx train --data DIR --family linear_gaussian --latent 4 --out checkpoints/lg.safetensors
    logpx train --data DIR --family bbb --epochs 10 --out checkpoints/bbb.safetensors
    logpx train --data DIR --arch conv.json --objective elbo --k 1 --out checkpoints/conv.safetensors

DIR holds IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]), or --images and
--labels name them (gzipped or not, any names); the last --valid images (10,000 by default, or a
fraction) are held out. VAEs train with Adam on dynamically binarised images (a Bernoulli likelihood; the
images as they are for any other, 8-bit likelihoods included); every epoch reports the training objective
and the held-out ELBO and IWAE-k on a fixed binarisation. ``--arch`` trains a network described by data
(``mlp_vae``, ``layered_vae``: the description file ``logpx convert --arch`` reads) instead of Burda et al.'s. The linear-Gaussian family
is fitted in closed form (probabilistic PCA, Tipping and Bishop 1999) and then given a deliberately
imperfect encoder, so that its estimators have a real bias against an exactly known log p(x).
Deterministic for a given --seed on a given machine and thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ..estimators import point_estimate
from ..families import (
    MLPVAE,
    VAE,
    BayesMLP,
    BBBConfig,
    LatentVariableModel,
    LayeredVAE,
    LinearGaussian,
    LinearGaussianConfig,
    VAEConfig,
    build_model,
    predictive_summary,
)
from ..families.bbb import expected_calibration_error, kl_weights
from ..io import (
    BINARIZE_SEED,
    TRAINING_STATE_SUFFIX,
    binarize,
    binarize_sample,
    held_out_count,
    load_checkpoint,
    load_document,
    load_idx_dataset,
    model_name_problem,
    save_checkpoint,
    split_train_valid,
)
from ..plan import EstimatorSpec, Plan
from ..runtime import keep_freed_memory, resolve_device, set_thread_budget
from ..samplers import run_plan

PROG = "logpx train"


@dataclass
class TrainConfig:
    data: str = field(
        default="",
        metadata={"help": "directory of IDX files train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"},
    )
    images: str = field(default="", metadata={"help": "an IDX image file of any name (instead of --data)"})
    labels: str = field(default="", metadata={"help": "its IDX label file (with --images)"})
    valid: float = field(
        default=10_000.0, metadata={"help": "images held out, the last of the file: a count, or a fraction below 1"}
    )
    resume: bool = field(
        default=False,
        metadata={"help": "vae, bbb: continue from --out and its .state.safetensors (optimiser, random state, epoch)"},
    )
    device: str = field(
        default="auto",
        metadata={"help": "vae: auto (CUDA when available), cpu, cuda or cuda:N; the others train on the CPU"},
    )
    out: str = field(default="", metadata={"help": "checkpoint path (required)"})
    family: str = field(default="vae", metadata={"help": "vae | linear_gaussian | bbb (--arch: the file's)"})
    arch: str = field(
        default="",
        metadata={
            "help": "a network described by data: a JSON or YAML file with family (mlp_vae, layered_vae), "
            "input_shape and arch, as logpx convert --arch reads (docs/checkpoints.md)"
        },
    )
    layers: int = field(default=1, metadata={"help": "stochastic layers (vae)"})
    latent: int = field(default=50, metadata={"help": "top latent size; 2 for the 2-D variant"})
    objective: str = field(default="iwae", metadata={"help": "elbo | iwae | jvi"})
    k: int = field(
        default=50, metadata={"help": "samples per input in the objective (elbo uses k too: the mean of k log-weights)"}
    )
    order: int = field(default=1, metadata={"help": "jvi order"})
    epochs: int = field(default=10, metadata={"help": "passes over the training images"})
    batch_size: int = field(default=100, metadata={"help": "images per minibatch"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, minibatches and samples"})
    limit: int = field(
        default=0, metadata={"help": "train on the first N training images only (0: all); for smoke tests"}
    )
    valid_eval: int = field(default=1000, metadata={"help": "held-out images scored after every epoch"})
    max_minutes: float = field(
        default=0.0, metadata={"help": "stop after the epoch that passes this wall time (0: no limit)"}
    )
    threads: int = field(default=0, metadata={"help": "torch threads (0: torch's default)"})
    encoder_shrink: float = field(
        default=0.8, metadata={"help": "linear_gaussian: encoder mean map = shrink * exact posterior map"}
    )
    encoder_widen: float = field(
        default=1.5, metadata={"help": "linear_gaussian: encoder std = widen * exact posterior std"}
    )
    hidden: list[int] = field(default_factory=lambda: [200, 200], metadata={"help": "vae: hidden layer widths"})
    bbb_hidden: list[int] = field(default_factory=lambda: [400, 400], metadata={"help": "bbb: hidden layer widths"})
    weight_samples: int = field(
        default=2, metadata={"help": "bbb: Monte Carlo weight draws per minibatch in the free energy"}
    )
    kl_weighting: str = field(
        default="blundell", metadata={"help": "bbb: blundell (2^(M-i) / (2^M - 1)) or uniform (1/M)"}
    )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        text = f"{f.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", help=f.metadata["help"])
        elif isinstance(default, list):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, nargs="+", default=default, help=text)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default, help=text)
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    if not (cfg.data or cfg.images) or not cfg.out:
        parser.error("--out and either --data or --images (with --labels) are required")
    if bool(cfg.images) != bool(cfg.labels):
        parser.error("--images and --labels go together")
    if (problem := model_name_problem(cfg.out)) is not None:
        parser.error(f"--out {problem}")
    if cfg.arch:  # the description names the family; --family is not asked for as well
        try:
            spec = load_document(Path(cfg.arch), "--arch")
        except ValueError as exc:
            parser.error(str(exc))
        if not isinstance(spec, dict) or spec.get("family") not in (MLPVAE.family, LayeredVAE.family):
            parser.error(f"--arch {cfg.arch}: an object whose family is {MLPVAE.family} or {LayeredVAE.family}")
        cfg = dataclasses.replace(cfg, family=spec["family"])
    if cfg.resume and cfg.family == "linear_gaussian":
        parser.error("--resume: linear_gaussian is fitted in closed form in one step; there is no run to continue")
    return cfg


def split(cfg: TrainConfig, *tensors: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each tensor as (train, held out) by ``--valid``, the training part cut to ``--limit``; a clear
    error, not a NaN, when there is too little data for one batch."""
    n = tensors[0].shape[0]
    try:
        count = held_out_count(n, cfg.valid)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    parts = [split_train_valid(t, count) for t in tensors]
    parts = [(train[: cfg.limit] if cfg.limit else train, valid) for train, valid in parts]
    if parts[0][0].shape[0] < cfg.batch_size:
        raise SystemExit(
            f"error: {parts[0][0].shape[0]} training images, fewer than one batch of {cfg.batch_size}; "
            "lower --batch-size, --valid or raise --limit"
        )
    return parts


def objective_loss(log_w: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Negative mean of the chosen estimator over the batch: the same estimators the service runs."""
    return -point_estimate(log_w, EstimatorSpec(cfg.objective, cfg.k, cfg.order)).value.mean()  # type: ignore[arg-type]


@torch.no_grad()
def held_out_bounds(model: LatentVariableModel, x_valid: torch.Tensor, k: int, seed: int) -> dict[str, float]:
    """Mean ELBO and IWAE-k (both from the same k draws) on ``x_valid`` (already binarised)."""
    generator = torch.Generator(device=x_valid.device).manual_seed(seed)
    plan = Plan.of(EstimatorSpec("elbo", k), EstimatorSpec("iwae", k))
    with torch.no_grad():
        parts = [run_plan(model, xb, plan, generator) for xb in x_valid.split(500)]
    return {
        e.spec.name: float(torch.cat([outcomes[i].estimate.log_px for outcomes in parts]).mean())
        for i, e in enumerate(plan.entries)
    }


def new_vae(cfg: TrainConfig, input_dim: int) -> LatentVariableModel:
    """Burda et al.'s VAE of ``--layers`` / ``--latent`` / ``--hidden``, or the network ``--arch`` describes."""
    if not cfg.arch:
        return VAE(VAEConfig(layers=cfg.layers, latent=cfg.latent, hidden=cfg.hidden, input_dim=input_dim))
    spec = load_document(Path(cfg.arch), "--arch")
    try:
        model = build_model(spec["family"], spec["arch"], spec.get("input_shape"))
    except (ValueError, TypeError, KeyError) as exc:
        raise SystemExit(f"error: --arch {cfg.arch}: {exc}") from None
    if not isinstance(model, LatentVariableModel) or model.input_dim != input_dim:
        raise SystemExit(f"error: --arch {cfg.arch}: not a VAE on inputs of {input_dim} values")
    return model


def train_vae(cfg: TrainConfig, x: torch.Tensor, dataset: dict[str, object]) -> None:
    device = torch.device(resolve_device(cfg.device))
    ((x_train, x_valid),) = split(cfg, x.to(device))
    with torch.random.fork_rng():  # weight initialisation is the one use of torch's global RNG
        torch.manual_seed(cfg.seed)
        model = new_vae(cfg, x.shape[1]).to(device)
    binary = model.likelihood == "bernoulli"
    # Held out as the service and `logpx evaluate` read it: a Bernoulli model's images binarised by each image's
    # own draws under the protocol seed; any other model's as they are (8-bit data: the values k / 255).
    valid_fixed = (
        binarize(x_valid[: cfg.valid_eval], "sample", seed=BINARIZE_SEED) if binary else x_valid[: cfg.valid_eval]
    )
    if isinstance(model, VAE):
        model.init_output_bias(x_train.mean(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-4)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    num_batches = math.ceil(x_train.shape[0] / cfg.batch_size)
    history: list[dict[str, float]] = []
    done, spent = load_state(cfg, model, optimizer, generator, history) if cfg.resume else (0, 0.0)
    start = time.perf_counter() - spent
    for epoch in range(done + 1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=generator, device=device)
        running = 0.0
        bar = tqdm(range(num_batches), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", mininterval=2.0)
        for i in bar:
            xb = x_train[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            xb = binarize_sample(xb, generator) if binary else xb
            loss = objective_loss(model.log_weights(xb, cfg.k, generator), cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += (-loss.item() - running) / (i + 1)
            bar.set_postfix({f"train_{cfg.objective}": f"{running:.2f}"}, refresh=False)
        model.eval()
        bounds = held_out_bounds(model, valid_fixed, max(cfg.k, 50), seed=cfg.seed + epoch)
        history.append(
            {
                "epoch": epoch,
                f"train_{cfg.objective}": running,
                **{f"valid_{n}": v for n, v in bounds.items()},
                "valid_k": max(cfg.k, 50),
            }
        )
        print(
            " ".join(f"{n}={v:.3f}" if isinstance(v, float) else f"{n}={v}" for n, v in history[-1].items()), flush=True
        )
        elapsed = time.perf_counter() - start
        training = {
            "objective": cfg.objective,
            "k": cfg.k,
            "order": cfg.order if cfg.objective == "jvi" else None,
            "epochs": epoch,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "wall_time_s": round(elapsed, 1),
            "history": history,
        }
        save_checkpoint(
            cfg.out,
            model,
            training=training,
            dataset={**dataset, "train_images": x_train.shape[0], "valid_images": x_valid.shape[0]},
            final_bounds=history[-1],
        )
        save_state(cfg, optimizer, generator, epoch, history, elapsed)
        if cfg.max_minutes and elapsed > cfg.max_minutes * 60:
            print(f"stopping after epoch {epoch}: {elapsed / 60:.1f} min > --max-minutes {cfg.max_minutes}")
            break


# What must match for a run to continue another: everything that shapes the model, the data and the draws.
RESUME_KEYS = {
    "vae": ("family", "layers", "latent", "hidden", "objective", "k", "order"),
    "bbb": ("family", "bbb_hidden", "weight_samples", "kl_weighting"),
    **dict.fromkeys((MLPVAE.family, LayeredVAE.family), ("family", "arch", "objective", "k", "order")),
}
SHARED_RESUME_KEYS = ("batch_size", "lr", "seed", "limit", "valid")


def resume_config(cfg: TrainConfig) -> dict[str, object]:
    return {key: getattr(cfg, key) for key in (*RESUME_KEYS[cfg.family], *SHARED_RESUME_KEYS)}


def state_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out).with_suffix(TRAINING_STATE_SUFFIX)


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}{i}.{name}": t.detach().cpu().contiguous()
        for i, state in optimizer.state_dict()["state"].items()
        for name, t in state.items()
    }


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], param_groups: list[dict]
) -> None:
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix):
            index, key = name.removeprefix(prefix).split(".", 1)
            moments.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": moments, "param_groups": param_groups})


def save_state(
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    epoch: int,
    history: list[dict[str, float]],
    elapsed: float,
    companions: Mapping[str, tuple[nn.Module, torch.optim.Optimizer]] | None = None,
) -> None:
    """The optimiser's moments, the random state and the epoch beside the checkpoint (safetensors and
    JSON, never a pickle), so that ``--resume`` continues exactly where this epoch ended. ``companions``
    are networks trained alongside that the checkpoint does not hold (bbb's deterministic baseline):
    their weights and optimisers are kept here too."""
    tensors = _optimizer_tensors("optimizer.", optimizer)
    tensors["generator"] = generator.get_state()
    groups = {}
    for prefix, (module, companion_optimizer) in (companions or {}).items():
        tensors.update(_optimizer_tensors(f"{prefix}.optimizer.", companion_optimizer))
        tensors.update({f"{prefix}.weights.{n}": t.detach().cpu().contiguous() for n, t in module.state_dict().items()})
        groups[prefix] = companion_optimizer.state_dict()["param_groups"]
    meta = {
        "epoch": epoch,
        "history": history,
        "elapsed": elapsed,
        "param_groups": optimizer.state_dict()["param_groups"],
        "companion_param_groups": groups,
        "config": resume_config(cfg),
    }
    target = state_path(cfg)
    tmp = target.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"logpx_state": json.dumps(meta)})
    os.replace(tmp, target)


def load_state(
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: list[dict[str, float]],
    companions: Mapping[str, tuple[nn.Module, torch.optim.Optimizer]] | None = None,
) -> tuple[int, float]:
    """Restore what ``save_state`` wrote (and the weights from ``--out``); returns (epochs done, seconds spent)."""
    path = state_path(cfg)
    if not path.is_file() or not Path(cfg.out).is_file():
        raise SystemExit(f"error: --resume needs {cfg.out} and {path.name} beside it; train without --resume first")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["logpx_state"])
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    now = resume_config(cfg)
    changed = {k: (meta["config"].get(k), v) for k, v in now.items() if meta["config"].get(k) != v}
    if changed:
        raise SystemExit(f"error: --resume with other settings than the run it continues (was, now): {changed}")
    model.load_state_dict(load_checkpoint(cfg.out).model.state_dict())
    _restore_optimizer(optimizer, "optimizer.", tensors, meta["param_groups"])
    for prefix, (module, companion_optimizer) in (companions or {}).items():
        weights = f"{prefix}.weights."
        module.load_state_dict({n.removeprefix(weights): t for n, t in tensors.items() if n.startswith(weights)})
        _restore_optimizer(companion_optimizer, f"{prefix}.optimizer.", tensors, meta["companion_param_groups"][prefix])
    generator.set_state(tensors["generator"])
    history.extend(meta["history"])
    print(f"resuming after epoch {meta['epoch']} of {cfg.epochs}")
    return int(meta["epoch"]), float(meta["elapsed"])


def fit_linear_gaussian(cfg: TrainConfig, x: torch.Tensor, dataset: dict[str, object]) -> None:
    """Probabilistic PCA maximum likelihood (Tipping and Bishop 1999, eqs. (7)-(8)), then an encoder
    that is deliberately wrong: mean map shrunk, standard deviation widened."""
    ((x_train, x_valid),) = split(cfg, x.double())
    d = cfg.latent
    mean = x_train.mean(0)
    cov = torch.cov((x_train - mean).T)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    eigval, eigvec = eigval.flip(0), eigvec.flip(1)
    noise_var = eigval[d:].mean()
    model = LinearGaussian(LinearGaussianConfig(input_dim=x.shape[1], latent=d)).double()
    with torch.no_grad():
        model.weight.copy_(eigvec[:, :d] * torch.sqrt(eigval[:d] - noise_var))
        model.bias.copy_(mean)
        model.log_noise.copy_(0.5 * torch.log(noise_var))
        post_map, post_cov = model.exact_posterior()
        model.enc_weight.copy_(cfg.encoder_shrink * post_map)
        model.enc_bias.copy_(-cfg.encoder_shrink * post_map @ mean)
        model.enc_log_sigma.copy_(0.5 * torch.log(torch.diagonal(post_cov)) + math.log(cfg.encoder_widen))
        valid_exact = float(model.exact_log_px(x_valid[: cfg.valid_eval]).mean())
    training = {
        "objective": "ppca_closed_form",
        "k": None,
        "order": None,
        "epochs": 0,
        "encoder_shrink": cfg.encoder_shrink,
        "encoder_widen": cfg.encoder_widen,
        "seed": cfg.seed,
    }
    save_checkpoint(
        cfg.out,
        model,
        training=training,
        dataset={**dataset, "train_images": x_train.shape[0], "valid_images": x_valid.shape[0]},
        final_bounds={"valid_exact_log_px": valid_exact},
    )
    print(f"valid exact log p(x) = {valid_exact:.3f} over {cfg.valid_eval} images")


@torch.no_grad()
def classifier_metrics(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, predictive log-likelihood (IWAE over the k draws of ``log_probs`` ``[k, B, C]``) and ECE."""
    k = log_probs.shape[0]
    summary = predictive_summary(log_probs)
    per_sample = BayesMLP.label_log_likelihoods(log_probs, labels).double()  # [k, B]
    log_lik = point_estimate(per_sample, EstimatorSpec("iwae", k)).value if k > 1 else per_sample[0]
    return {
        "accuracy": float((summary.predicted == labels).double().mean()),
        "log_lik": float(log_lik.mean()),
        "ece": expected_calibration_error(summary.probs, labels),
    }


def train_bbb(cfg: TrainConfig, x: torch.Tensor, labels: torch.Tensor, dataset: dict[str, object]) -> None:
    """Bayes by Backprop, and the deterministic network of the same size trained the same way."""
    (x_train, x_valid), (y_train, y_valid) = split(cfg, x, labels)
    x_eval, y_eval = x_valid[: cfg.valid_eval], y_valid[: cfg.valid_eval]
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        # The input size and the classes come from the data, not from MNIST's 784 and 10.
        classes = int(labels.max()) + 1
        model = BayesMLP(BBBConfig(input_dim=x.shape[1], hidden=cfg.bbb_hidden, classes=classes))
        sizes = [x.shape[1], *cfg.bbb_hidden, classes]
        baseline = nn.Sequential(*[m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.ReLU())][:-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    baseline_optimizer = torch.optim.Adam(baseline.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    num_batches = math.ceil(x_train.shape[0] / cfg.batch_size)
    weights = kl_weights(num_batches, cfg.kl_weighting)
    history: list[dict[str, float]] = []
    companions = {"baseline": (baseline, baseline_optimizer)}
    done, spent = load_state(cfg, model, optimizer, generator, history, companions) if cfg.resume else (0, 0.0)
    start = time.perf_counter() - spent
    for epoch in range(done + 1, cfg.epochs + 1):
        order = torch.randperm(x_train.shape[0], generator=generator)
        running = 0.0
        bar = tqdm(range(num_batches), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", mininterval=2.0)
        for i in bar:
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            loss = model.free_energy(x_train[idx], y_train[idx], float(weights[i]), generator, cfg.weight_samples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            base_loss = F.cross_entropy(baseline(x_train[idx]), y_train[idx])
            baseline_optimizer.zero_grad(set_to_none=True)
            base_loss.backward()
            baseline_optimizer.step()
            running += (loss.item() - running) / (i + 1)
            bar.set_postfix({"free_energy": f"{running:.1f}"}, refresh=False)
        with torch.no_grad():
            log_probs, _ = model.sample_forward(x_eval, 100, torch.Generator().manual_seed(cfg.seed + epoch))
            bayes = classifier_metrics(log_probs, y_eval)
            det = classifier_metrics(F.log_softmax(baseline(x_eval), -1).unsqueeze(0), y_eval)
        history.append(
            {
                "epoch": epoch,
                "train_free_energy": running,
                **{f"valid_{n}": v for n, v in bayes.items()},
                **{f"deterministic_valid_{n}": v for n, v in det.items()},
            }
        )
        print(
            " ".join(f"{n}={v:.4f}" if isinstance(v, float) else f"{n}={v}" for n, v in history[-1].items()), flush=True
        )
        elapsed = time.perf_counter() - start
        training = {
            "objective": "bbb_free_energy",
            "k": cfg.weight_samples,
            "order": None,
            "epochs": epoch,
            "kl_weighting": cfg.kl_weighting,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "wall_time_s": round(elapsed, 1),
            "history": history,
        }
        save_checkpoint(
            cfg.out,
            model,
            training=training,
            dataset={**dataset, "train_images": x_train.shape[0], "valid_images": x_valid.shape[0]},
            final_bounds=history[-1],
            extra={"deterministic_baseline": {n: v for n, v in history[-1].items() if n.startswith("deterministic")}},
        )
        save_state(cfg, optimizer, generator, epoch, history, elapsed, companions)
        if cfg.max_minutes and elapsed > cfg.max_minutes * 60:
            print(f"stopping after epoch {epoch}: {elapsed / 60:.1f} min > --max-minutes {cfg.max_minutes}")
            break


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    set_thread_budget(cfg.threads)
    keep_freed_memory()
    try:
        x, labels, dataset = load_idx_dataset(cfg.data or ".", images=cfg.images or None, labels=cfg.labels or None)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    trainer = TRAINERS.get(cfg.family)
    if trainer is None:
        raise SystemExit(f"unknown family {cfg.family!r}; choose one of {sorted(TRAINERS)}")
    trainer(cfg, x, labels, dataset)
    print(f"wrote {cfg.out}")


# The trainer of each family, keyed by the family type's own name (``Family.family``), not a literal.
TRAINERS: dict[str, Callable[[TrainConfig, torch.Tensor, torch.Tensor, dict[str, object]], None]] = {
    **{
        family: lambda cfg, x, _labels, dataset: train_vae(cfg, x, dataset)
        for family in (VAE.family, MLPVAE.family, LayeredVAE.family)
    },
    LinearGaussian.family: lambda cfg, x, _labels, dataset: fit_linear_gaussian(cfg, x, dataset),
    BayesMLP.family: train_bbb,
}


if __name__ == "__main__":
    main()
