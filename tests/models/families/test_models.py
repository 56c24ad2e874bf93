"""Model families, chunking, checkpoint round trips and failures, and a short training run."""

from __future__ import annotations

import gzip
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from logpx import EstimatorSpec, estimate
from logpx.evaluation.evaluate import main as evaluate_main
from logpx.io.checkpoint import METADATA_KEY, CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from logpx.io.data import BINARIZE_SEED, read_idx
from logpx.training.train import main as train_main
from tests.helpers import DATASET, TRAINING, linear_gaussian, sample_linear_gaussian, tiny_vae


@pytest.mark.parametrize(
    "make", [lambda: tiny_vae(layers=1), lambda: tiny_vae(layers=2), lambda: linear_gaussian(input_dim=784)]
)
def test_chunk_size_does_not_change_log_weights(make) -> None:  # type: ignore[no-untyped-def]
    model = make()
    x = (torch.rand(3, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        whole = model.log_weights(x, 37, generator=torch.Generator().manual_seed(1), max_elements=2**30)
        chunked = model.log_weights(x, 37, generator=torch.Generator().manual_seed(1), max_elements=1)
    assert whole.shape == (37, 3)
    assert torch.allclose(whole, chunked, rtol=1e-6, atol=1e-4)


def test_save_load_round_trip_gives_identical_log_weights(tmp_path: Path) -> None:
    model = tiny_vae(layers=2)
    path = tmp_path / "m.safetensors"
    meta = save_checkpoint(path, model, training=TRAINING, dataset=DATASET, final_bounds={"valid_iwae": -1.0})
    loaded = load_checkpoint(path)
    assert loaded.metadata == json.loads(json.dumps(meta)) and len(loaded.sha256) == 64
    x = (torch.rand(2, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        a = model.log_weights(x, 10, generator=torch.Generator().manual_seed(3))
        b = loaded.model.log_weights(x, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def _rewrite(path: Path, out: Path, tensors_fn=None, meta_fn=None) -> None:  # type: ignore[no-untyped-def]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = dict(f.metadata())
    if tensors_fn:
        tensors = tensors_fn(tensors)
    if meta_fn:
        meta = meta_fn(meta)
    save_file(tensors, str(out), metadata=meta)


@pytest.mark.parametrize(
    "breaker,message",
    [
        (lambda p, o: o.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "safetensors"),
        (lambda p, o: o.write_bytes(b"PK\x03\x04 a zip, or a pickle, but not safetensors"), "safetensors"),
        (lambda p, o: _rewrite(p, o, meta_fn=lambda m: {METADATA_KEY: "{not json"}), "not JSON"),
        (lambda p, o: _rewrite(p, o, meta_fn=lambda m: {}), "no 'logpx' entry"),
        (
            lambda p, o: _rewrite(p, o, tensors_fn=lambda t: {k: v for k, v in t.items() if k != "decoder.1.bias"}),
            "missing tensors: ['decoder.1.bias']",
        ),
        (
            lambda p, o: _rewrite(p, o, tensors_fn=lambda t: {**t, "decoder.1.bias": torch.zeros(5)}),
            "has shape [5], architecture needs [784]",
        ),
        (
            lambda p, o: _rewrite(p, o, tensors_fn=lambda t: {**t, "decoder.1.bias": torch.full((784,), float("nan"))}),
            "NaN or inf",
        ),
        (
            lambda p, o: _rewrite(p, o, meta_fn=lambda m: {METADATA_KEY: m[METADATA_KEY].replace('"vae"', '"gan"')}),
            "unknown model family 'gan'",
        ),
        (
            lambda p, o: _rewrite(
                p,
                o,
                meta_fn=lambda m: {METADATA_KEY: m[METADATA_KEY].replace('"format_version": 1', '"format_version": 9')},
            ),
            "format_version 9",
        ),
        (
            lambda p, o: _rewrite(p, o, tensors_fn=lambda t: {**t, "extra": torch.zeros(1)}),
            "unexpected tensors: ['extra']",
        ),
    ],
)
def test_broken_checkpoints_fail_with_a_clear_reason(tmp_path: Path, breaker, message: str) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, tiny_vae(), training=TRAINING, dataset=DATASET)
    bad = tmp_path / "bad.safetensors"
    breaker(good, bad)
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_checkpoint(bad)


def test_metadata_holds_the_documented_fields(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.safetensors", tiny_vae(), training=TRAINING, dataset=DATASET)
    meta = read_metadata(tmp_path / "m.safetensors")
    for key in (
        "format_version",
        "family",
        "arch",
        "likelihood",
        "input_shape",
        "training",
        "dataset",
        "final_bounds",
        "created",
    ):
        assert key in meta
    assert meta["likelihood"] == "bernoulli" and meta["input_shape"] == [28, 28]


def test_linear_gaussian_estimators_bracket_the_exact_evidence() -> None:
    """IWAE below log p(x) and converging as k grows; JVI closer; on model log-weights, 2000 replicates
    (per-replicate sd of IWAE-16 under 0.9 nats here: standard errors under 0.02 against biases over 0.1)."""
    model = linear_gaussian()
    x = sample_linear_gaussian(model, 3, seed=0)
    with torch.no_grad():
        exact = model.exact_log_px(x).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        log_w = model.log_weights(x, 2000 * 16, generator=g).double().reshape(2000, 16, 3)  # [R, k, B]

    def bias(spec: EstimatorSpec) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.stack([estimate(lw, spec).log_px for lw in log_w]) - exact  # [R, B]
        return v.mean(0), v.std(0) / math.sqrt(2000)

    previous = None
    for k in (4, 8, 16):
        b, se = bias(EstimatorSpec("iwae", k))
        assert (b + 3 * se < 0).all(), (k, b, se)
        if previous is not None:
            assert (b > previous).all()
        previous = b
        jb, _ = bias(EstimatorSpec("jvi", k, 1))
        assert (jb.abs() < b.abs()).all(), (k, jb, b)


def _write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.uint8: 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_idx_reader_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    _write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_training_a_tiny_model_improves_its_bound(tmp_path: Path) -> None:
    """Synthetic digits (three noisy prototypes), 10,600 images so that the last 10,000 are held out."""
    rng = np.random.default_rng(0)
    prototypes = (rng.random((3, 784)) < 0.3).astype(np.float64)
    labels = rng.integers(0, 3, 10_600)
    images = np.clip(prototypes[labels] * 0.9 + rng.random((10_600, 784)) * 0.1, 0, 1)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", (images * 255).astype(np.uint8).reshape(-1, 28, 28))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    out = tmp_path / "tiny.safetensors"
    train_main(
        [
            "--data",
            str(tmp_path),
            "--out",
            str(out),
            "--objective",
            "jvi",
            "--k",
            "5",
            "--order",
            "1",
            "--epochs",
            "3",
            "--limit",
            "600",
            "--valid-eval",
            "200",
            "--hidden",
            "32",
            "--latent",
            "4",
            "--batch-size",
            "50",
        ]
    )
    history = read_metadata(out)["training"]["history"]
    assert len(history) == 3
    assert history[-1]["valid_iwae"] > history[0]["valid_iwae"] + 5, history


@pytest.mark.parametrize("layers", [1, 2])
def test_vae_log_weights_match_torch_distributions(layers: int) -> None:
    """log p(x, z) - log q(z | x) rebuilt from torch.distributions on the same noise."""
    from torch.distributions import Bernoulli, Normal

    model = tiny_vae(seed=4, layers=layers).double()
    x = (torch.rand(3, 784, generator=torch.Generator().manual_seed(0), dtype=torch.float64) > 0.6).double()
    flat_noise = model.sample_noise(6, 3, torch.Generator().manual_seed(1)).double()
    noise = flat_noise.split(model.latent_sizes, dim=-1)
    with torch.no_grad():
        got = model.log_weights_from_noise(x, flat_noise)
        # The density functions AIS anneals give the same log-weights at the same latents.
        z = model.sample_q(x, flat_noise)
        assert torch.allclose(got, model.log_joint(x, z) - model.log_q(x, z), rtol=1e-12, atol=1e-9)
        mu1, ls1 = model.encoder(x)
        h1 = mu1 + ls1.exp() * noise[0]
        log_q = Normal(mu1, ls1.exp()).log_prob(h1).sum(-1)
        if layers == 1:
            log_prior = Normal(0.0, 1.0).log_prob(h1).sum(-1)
        else:
            mu2, ls2 = model.encoder2(h1)
            h2 = mu2 + ls2.exp() * noise[1]
            log_q = log_q + Normal(mu2, ls2.exp()).log_prob(h2).sum(-1)
            pm, pls = model.prior1(h2)
            log_prior = Normal(0.0, 1.0).log_prob(h2).sum(-1) + Normal(pm, pls.exp()).log_prob(h1).sum(-1)
        log_lik = Bernoulli(logits=model.decoder(h1)).log_prob(x.expand(6, -1, -1)).sum(-1)
    assert torch.allclose(got, log_lik + log_prior - log_q, rtol=1e-12, atol=1e-9)


def test_saved_checkpoints_are_readable_by_all(tmp_path: Path) -> None:
    """A container's non-root user must be able to read a mounted checkpoint written by `logpx train`."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_vae(), training=TRAINING, dataset=DATASET)
    assert path.stat().st_mode & 0o777 == 0o644
    save_checkpoint(path, tiny_vae(seed=1), training=TRAINING, dataset=DATASET)  # replaced atomically, same mode
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _synthetic(tmp_path: Path, n: int, images_name: str, labels_name: str) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    prototypes = (rng.random((3, 784)) < 0.3).astype(np.float64)
    labels = rng.integers(0, 3, n)
    images = np.clip(prototypes[labels] * 0.9 + rng.random((n, 784)) * 0.1, 0, 1)
    _write_idx(tmp_path / images_name, (images * 255).astype(np.uint8).reshape(-1, 28, 28))
    _write_idx(tmp_path / labels_name, labels.astype(np.uint8))
    return tmp_path / images_name, tmp_path / labels_name


def test_training_on_300_images_with_any_file_names_and_a_held_out_fraction(tmp_path: Path) -> None:
    images, labels = _synthetic(tmp_path, 300, "my-digits.idx", "my-labels.idx.gz")
    out = tmp_path / "small.safetensors"
    started = time.monotonic()
    train_main(
        [
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--valid",
            "0.2",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--k",
            "5",
            "--hidden",
            "32",
            "--latent",
            "4",
            "--batch-size",
            "50",
            "--valid-eval",
            "60",
            "--device",
            "cpu",
        ]
    )
    assert time.monotonic() - started < 30
    meta = read_metadata(out)
    assert meta["dataset"]["train_images"] == 240 and meta["dataset"]["valid_images"] == 60
    assert meta["dataset"]["file"] == "my-digits.idx" and len(meta["training"]["history"]) == 2


def test_evaluate_scores_what_training_held_out_binarised_as_training_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logpx evaluate` takes train's data options and the split the checkpoint records (here 60 of 300,
    where it once took the last 10,000 whatever was held out), and binarises as training's held-out bounds
    and the service do: on the same draws its IWAE equals training's final held-out IWAE. Each long phase
    says its expected time and thread setting first, BDMC included."""
    images, labels = _synthetic(tmp_path, 300, "my-digits.idx", "my-labels.idx")
    out = tmp_path / "small.safetensors"
    data = ["--images", str(images), "--labels", str(labels)]
    small = ["--k", "5", "--hidden", "32", "--latent", "4", "--batch-size", "50", "--device", "cpu"]
    train_main([*data, "--valid", "60", "--valid-eval", "60", "--out", str(out), "--epochs", "1", *small])
    trained = read_metadata(out)["final_bounds"]
    capsys.readouterr()
    scoring = ["--limit", "0", "--estimators", "elbo:50", "iwae:50", "--seed", "1", "--batch-size", "500"]
    ais = ["--ais", "5", "--ais-limit", "2", "--bdmc", "2", "--threads", "1"]
    summary = evaluate_main([str(out), *data, *scoring, *ais])
    printed = capsys.readouterr()
    assert summary["images"] == summary["held_out"] == 60
    assert summary["binarization"] == "sample" and summary["binarize_seed"] == BINARIZE_SEED
    # Training scored epoch 1 with seed + epoch = 1, the same draws as --seed 1 here.
    assert summary["estimators"]["iwae-50"]["mean"] == pytest.approx(trained["valid_iwae"], abs=1e-4)  # type: ignore[index]
    for phase in ("importance sampling (elbo:50 iwae:50): expected", "AIS (iwae:16@ais:5) on 2 images: expected"):
        assert phase in printed.out
    assert "BDMC on 2 simulated inputs: expected" in printed.out and "1 torch thread(s)" in printed.out
    assert "bdmc: 100%" in printed.err and "ais: 100%" in printed.err  # progress of every long phase


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "500"], "fewer than one batch of 500"),
        (["--valid", "300"], "leaves no training or no held-out images"),
        (["--valid", "1.5"], "a count of images is a whole number"),
    ],
)
def test_too_little_data_is_a_clear_error(tmp_path: Path, extra: list[str], message: str) -> None:
    images, labels = _synthetic(tmp_path, 300, "a.idx", "b.idx")
    with pytest.raises(SystemExit) as info:
        train_main(
            [
                "--images",
                str(images),
                "--labels",
                str(labels),
                "--valid",
                "0.2",
                "--out",
                str(tmp_path / "m.safetensors"),
                *extra,
            ]
        )
    assert message in str(info.value)


@pytest.mark.parametrize(
    "family_args",
    [
        ["--family", "vae", "--k", "5", "--hidden", "16", "--latent", "3"],
        # bbb keeps its deterministic baseline's weights and optimiser in the state file: the checkpoint
        # records that network's held-out metrics every epoch, so a resumed run must continue it too.
        ["--family", "bbb", "--bbb-hidden", "16", "--weight-samples", "2"],
    ],
    ids=["vae", "bbb"],
)
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path: Path, family_args: list[str]) -> None:
    from safetensors.torch import load_file

    images, labels = _synthetic(tmp_path, 300, "x.idx", "y.idx")
    common = [
        *family_args,
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--valid",
        "0.2",
        "--batch-size",
        "60",
        "--valid-eval",
        "60",
        "--seed",
        "3",
    ]
    whole, split_run = tmp_path / "whole.safetensors", tmp_path / "split.safetensors"
    train_main([*common, "--out", str(whole), "--epochs", "3"])
    train_main([*common, "--out", str(split_run), "--epochs", "1"])
    assert (tmp_path / "split.state.safetensors").is_file()
    train_main([*common, "--out", str(split_run), "--epochs", "3", "--resume"])
    a, b = load_file(str(whole)), load_file(str(split_run))
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    whole_meta, split_meta = read_metadata(whole), read_metadata(split_run)
    assert whole_meta["training"]["history"] == split_meta["training"]["history"]
    assert len(split_meta["training"]["history"]) == 3
    with pytest.raises(SystemExit) as info:  # other settings than the run it continues: refused
        train_main([*common, "--out", str(split_run), "--epochs", "4", "--resume", "--lr", "0.01"])
    assert "other settings" in str(info.value)


def test_resume_refuses_a_closed_form_fit_and_a_missing_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = _synthetic(tmp_path, 300, "x.idx", "y.idx")
    data = ["--images", str(images), "--labels", str(labels), "--valid", "0.2"]
    with pytest.raises(SystemExit):  # argparse's usage error, on stderr
        train_main([*data, "--family", "linear_gaussian", "--out", str(tmp_path / "lg.safetensors"), "--resume"])
    assert "fitted in closed form" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        train_main([*data, "--family", "bbb", "--out", str(tmp_path / "none.safetensors"), "--resume"])
    assert "train without --resume first" in str(info.value)


def test_a_described_8_bit_conv_vae_trains_on_the_images_as_they_are(tmp_path: Path) -> None:
    """`logpx train --arch` trains a layered_vae description with an 8-bit likelihood: no binarisation (the
    checkpoint's domain is uint8), and `logpx evaluate` scores the held-out images as training did, with bits
    per dimension beside the nats."""
    images, labels = _synthetic(tmp_path, 300, "my-digits.idx", "my-labels.idx")
    arch = tmp_path / "conv8.yaml"
    arch.write_text(
        "family: layered_vae\ninput_shape: [1, 28, 28]\n"
        "arch: {latent: 4, likelihood: discretized_logistic_mixture, mixtures: 2,\n"
        "  encoder: [{type: conv2d, out: 4, kernel: 4, stride: 2, padding: 1}, relu, flatten],\n"
        "  decoder: [{type: linear, out: 196}, relu, {type: unflatten, shape: [4, 7, 7]}, {type: upsample, scale: 4},\n"
        "            {type: conv2d, out: 6, kernel: 3, padding: 1}]}\n"
    )
    out = tmp_path / "conv8.safetensors"
    data = ["--images", str(images), "--labels", str(labels)]
    small = ["--objective", "elbo", "--k", "1", "--batch-size", "50", "--device", "cpu"]
    train_main(
        [*data, "--arch", str(arch), "--valid", "60", "--valid-eval", "60", "--out", str(out), "--epochs", "1", *small]
    )
    meta = read_metadata(out)
    assert meta["family"] == "layered_vae" and meta["binarize"] == "none"
    assert load_checkpoint(out).domain == "uint8"
    summary = evaluate_main(
        [str(out), *data, "--limit", "0", "--estimators", "elbo:50", "iwae:50", "--seed", "1", "--batch-size", "500"]
    )
    iwae = summary["estimators"]["iwae-50"]  # type: ignore[index]
    assert summary["binarization"] == "none" and iwae["mean"] == pytest.approx(
        meta["final_bounds"]["valid_iwae"], abs=1e-3
    )
    assert iwae["bits_per_dim"] == pytest.approx(-iwae["mean"] / (784 * math.log(2)))
