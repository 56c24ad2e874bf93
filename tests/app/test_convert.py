"""Bring your own model: the PyTorch examples VAE (ReLU, log-variance, fc1/fc21/fc22/fc3/fc4) converted
with the documented command, served, and checked against an independent computation on its weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn

from ..helpers import make_client, wait_ready

LOGPX = str(Path(sys.executable).with_name("logpx"))
NAMES = {
    "encoder.0.weight": "fc1.weight", "encoder.0.bias": "fc1.bias",
    "mu.weight": "fc21.weight", "mu.bias": "fc21.bias",
    "scale.weight": "fc22.weight", "scale.bias": "fc22.bias",
    "decoder.0.weight": "fc3.weight", "decoder.0.bias": "fc3.bias",
    "out.weight": "fc4.weight", "out.bias": "fc4.bias",
}  # fmt: skip
ARCH = {
    "family": "mlp_vae",
    "input_shape": [28, 28],
    "arch": {"input_dim": 784, "latent": 20, "encoder": [400], "decoder": [400], "activation": "relu",
             "scale": "log_var", "likelihood": "bernoulli"},
}  # fmt: skip


class ExamplesVAE(nn.Module):
    """As in pytorch/examples vae/main.py."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn(k, *mu.shape, generator=generator, dtype=mu.dtype)
        logits = self.fc4(F.relu(self.fc3(z)))
        log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        return log_lik + prior - torch.distributions.Normal(mu, std).log_prob(z).sum(-1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExamplesVAE]:
    d = tmp_path_factory.mktemp("convert")
    torch.manual_seed(0)
    vae = ExamplesVAE().eval()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(d / "vae.safetensors"))
    torch.save(vae.state_dict(), d / "vae.pt")
    (d / "names.json").write_text(json.dumps(NAMES))
    (d / "arch.json").write_text(json.dumps(ARCH))
    (d / "names.yaml").write_text(yaml.safe_dump(NAMES))  # the same files as YAML, used for the .pt source
    (d / "arch.yml").write_text(yaml.safe_dump(ARCH))
    (d / "served").mkdir()
    for source, target, names, arch in (
        ("vae.safetensors", "examples-vae", "names.json", "arch.json"),
        ("vae.pt", "examples-vae-pt", "names.yaml", "arch.yml"),
    ):
        out = subprocess.run(
            [LOGPX, "convert", str(d / source), "--names", str(d / names), "--arch", str(d / arch),
             "--out", str(d / "served" / f"{target}.safetensors"), "--dataset", "mnist"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    return d, vae


def test_converted_model_is_served_and_agrees_with_an_independent_computation(converted) -> None:  # type: ignore[no-untyped-def]
    d, vae = converted
    x = (torch.rand(2, 784, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    with torch.no_grad():
        from logpx.estimators import EstimatorSpec, estimate

        ref = estimate(
            vae.log_weights(x, 20_000, torch.Generator().manual_seed(2)).double(), EstimatorSpec("iwae", 20_000)
        )
    with make_client(d / "served") as client:
        wait_ready(client)
        for name in ("examples-vae", "examples-vae-pt"):
            r = client.post(
                f"/v1/models/{name}/evidence",
                json={"inputs": x.tolist(), "estimator": {"name": "iwae", "k": 5000}, "binarize": "none"},
            )
            assert r.status_code == 200, r.text
            for res, want, want_se in zip(r.json()["results"], ref.log_px.tolist(), ref.std_err.tolist(), strict=True):
                assert abs(res["log_px"] - want) <= 3 * (res["std_err"] ** 2 + want_se**2) ** 0.5 + 1e-3, (res, want)
        assert client.get("/v1/models/examples-vae").json()["metadata"]["training"]["objective"] == "imported"


def test_a_name_map_that_does_not_fit_is_one_clear_line(converted) -> None:  # type: ignore[no-untyped-def]
    d, _ = converted
    bad = {k: v for k, v in NAMES.items() if not k.startswith("scale")} | {"mu.weight": "fc3.weight"}
    (d / "bad.json").write_text(json.dumps(bad))
    out = subprocess.run(
        [LOGPX, "convert", str(d / "vae.safetensors"), "--names", str(d / "bad.json"), "--arch", str(d / "arch.json"),
         "--out", str(d / "x.safetensors")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "does not cover ['scale.bias', 'scale.weight']" in out.stderr
    assert "fc3.weight has shape [400, 20], mu.weight needs [20, 400]" in out.stderr
    assert "nothing maps: ['fc21.weight', 'fc22.bias', 'fc22.weight']" in out.stderr


class _Payload:
    """Unpickling this would run a command: what a hostile `.pt` holds."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch /tmp/logpx-pwned",))


def test_hostile_and_broken_files_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process (one cold CLI start is tested above): every bad input to `logpx convert` is a single
    `error:` line, exit status 1, no traceback, nothing executed, and never torch's advice to load with
    weights_only=False."""
    from logpx.cli import main

    names, arch = tmp_path / "names.json", tmp_path / "arch.json"
    names.write_text(json.dumps(NAMES))
    arch.write_text(json.dumps(ARCH))
    torch.save({"fc1.weight": _Payload()}, tmp_path / "pickle.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x04not a pickle at all")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "program.pt2").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "tag.yaml").write_text("!!python/object/apply:os.system ['touch /tmp/logpx-pwned']")
    weights = tmp_path / "garbage.pt"
    cases = [
        [str(tmp_path / "pickle.pt"), "--names", str(names), "--arch", str(arch)],
        [str(weights), "--names", str(names), "--arch", str(arch)],
        [str(tmp_path / "garbage.safetensors"), "--names", str(names), "--arch", str(arch)],
        [str(tmp_path / "program.pt2"), "--names", str(names), "--arch", str(arch)],
        [str(weights), "--names", str(tmp_path / "binary.json"), "--arch", str(arch)],
        [str(weights), "--names", str(tmp_path / "list.json"), "--arch", str(arch)],
        [str(weights), "--names", str(names), "--arch", str(tmp_path / "tag.yaml")],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_:
            main(["convert", *argv, "--out", str(tmp_path / "out.safetensors")])
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err and "weights_only" not in err, err
    assert not Path("/tmp/logpx-pwned").exists() and not (tmp_path / "out.safetensors").exists()


def test_a_name_the_service_would_not_serve_is_refused_with_one_it_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logpx convert --out "my model.safetensors"` once wrote a file the server then skipped; now nothing is
    written and the error names a file name the server serves."""
    from logpx.cli import main

    names, arch, weights = tmp_path / "names.json", tmp_path / "arch.json", tmp_path / "w.safetensors"
    names.write_text(json.dumps(NAMES))
    arch.write_text(json.dumps(ARCH))
    weights.write_bytes(b"unread: the name is checked first")
    for out, hint in (("my model.safetensors", "write it as my-model.safetensors"), ("mine.pt", "a .safetensors file")):
        with pytest.raises(SystemExit):
            main(["convert", str(weights), "--names", str(names), "--arch", str(arch), "--out", str(tmp_path / out)])
        err = capsys.readouterr().err
        assert err.startswith("error: ") and hint in err, err
        assert not (tmp_path / out).exists()


class _PythaeConvMNIST(nn.Module):
    """pythae 0.1.2's ``Encoder_Conv_VAE_MNIST`` / ``Decoder_Conv_AE_MNIST`` inside its ``VAE``, written out
    with the same modules and tensor names as a genuine ``model.save()`` folder holds (checked against pythae
    itself, docs/checkpoints.md): a BCE model, sigmoid output."""

    def __init__(self, latent: int) -> None:
        super().__init__()
        conv = [(1, 128), (128, 256), (256, 512), (512, 1024)]
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(i, o, 4, 2, padding=1), nn.BatchNorm2d(o), nn.ReLU()) for i, o in conv
        )
        self.encoder.embedding, self.encoder.log_var = nn.Linear(1024, latent), nn.Linear(1024, latent)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList([
            nn.Linear(latent, 1024 * 4 * 4),
            nn.Sequential(nn.ConvTranspose2d(1024, 512, 3, 2, padding=1), nn.BatchNorm2d(512), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(512, 256, 3, 2, padding=1, output_padding=1), nn.BatchNorm2d(256), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(256, 1, 3, 2, padding=1, output_padding=1), nn.Sigmoid()),
        ])  # fmt: skip
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):  # inference statistics that are not the defaults
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        self.eval()

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """pythae's own reading of its model: q, the prior, and the BCE of the sigmoid's output."""
        h = x.reshape(-1, 1, 28, 28)
        for layer in self.encoder.layers:
            h = layer(h)
        h = h.flatten(1)
        mu, log_var = self.encoder.embedding(h), self.encoder.log_var(h)
        eps = torch.randn(k, *mu.shape, generator=generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        r = self.decoder.layers[0](z.reshape(-1, mu.shape[-1])).reshape(-1, 1024, 4, 4)
        for layer in self.decoder.layers[1:]:
            r = layer(r)
        r = r.reshape(k, -1, 784).clamp(1e-12, 1 - 1e-12)
        log_px_z = (x * torch.log(r) + (1 - x) * torch.log1p(-r)).sum(-1)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
        return log_px_z + prior - q


def test_a_pythae_conv_vae_folder_converts_is_served_and_agrees(tmp_path: Path) -> None:
    """The documented `logpx convert FOLDER --pythae --pythae-arch conv-mnist`: the folder's cloudpickled
    networks are never loaded (this one's would run a command), the weights are, and the served model's
    IWAE over HTTP agrees with pythae's own reading of the same weights."""
    torch.manual_seed(0)
    ref = _PythaeConvMNIST(latent=16)
    folder = tmp_path / "pythae-vae"
    folder.mkdir()
    torch.save({"model_state_dict": ref.state_dict()}, folder / "model.pt")
    config = {"name": "VAEConfig", "input_dim": [1, 28, 28], "latent_dim": 16, "uses_default_encoder": False,
              "uses_default_decoder": False, "reconstruction_loss": "bce"}  # fmt: skip
    (folder / "model_config.json").write_text(json.dumps(config))
    torch.save(_Payload(), folder / "encoder.pkl")  # a cloudpickled network is code: never to be loaded
    served = tmp_path / "served"
    without = subprocess.run(
        [LOGPX, "convert", str(folder), "--pythae", "--out", str(served / "x.safetensors")],
        capture_output=True,
        text=True,
    )
    assert without.returncode == 1 and "--pythae-arch" in without.stderr and without.stderr.count("\n") == 1
    done = subprocess.run(
        [LOGPX, "convert", str(folder), "--pythae", "--pythae-arch", "conv-mnist", "--out",
         str(served / "pythae-conv.safetensors"), "--dataset", "mnist"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not Path("/tmp/logpx-pwned").exists()
    x = (torch.rand(1, 784, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    with torch.no_grad():
        from logpx.estimators import EstimatorSpec, estimate

        want = estimate(ref.log_weights(x, 400, torch.Generator().manual_seed(2)).double(), EstimatorSpec("iwae", 400))
    with make_client(served) as client:
        wait_ready(client, timeout=120)
        body = {"inputs": x.tolist(), "estimator": {"name": "iwae", "k": 400}, "binarize": "none", "seed": 3}
        r = client.post("/v1/models/pythae-conv/evidence", json=body)
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]
    tolerance = 3 * (got["std_err"] ** 2 + float(want.std_err[0]) ** 2) ** 0.5
    assert abs(got["log_px"] - float(want.log_px[0])) <= tolerance, (got, float(want.log_px[0]), tolerance)


class _ExamplesConvVAE(nn.Module):
    """A conv VAE written the way the PyTorch examples and most tutorials write it: Sequential trunks and two
    Linear heads, registered encoder, heads, decoder."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten()
        )
        self.fc_mu, self.fc_logvar = nn.Linear(3136, latent), nn.Linear(3136, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip


EXAMPLES_ARCH = {"family": "layered_vae", "input_shape": [1, 28, 28],
        "arch": {"latent": 16, "scale": "log_var", "likelihood": "bernoulli",
                 "encoder": [{"type": "conv2d", "out": 32, "kernel": 4, "stride": 2, "padding": 1}, "relu",
                             {"type": "conv2d", "out": 64, "kernel": 4, "stride": 2, "padding": 1}, "relu", "flatten"],
                 "decoder": [{"type": "linear", "out": 3136}, "relu", {"type": "unflatten", "shape": [64, 7, 7]},
                             {"type": "conv_transpose2d", "out": 32, "kernel": 4, "stride": 2, "padding": 1}, "relu",
                             {"type": "conv_transpose2d", "out": 1, "kernel": 4, "stride": 2, "padding": 1}]}}  # fmt: skip


def test_convert_by_order_pairs_a_state_dict_in_module_order(tmp_path: Path) -> None:
    """`logpx convert --by-order`: no name map for a network held in the same order as the description; the
    converted encoder and decoder compute what the user's do. A file whose order differs is one clear line."""
    from logpx.io import load_checkpoint

    torch.manual_seed(0)
    ref = _ExamplesConvVAE()
    torch.save(ref.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "arch.json").write_text(json.dumps(EXAMPLES_ARCH))
    out = tmp_path / "examples-conv.safetensors"
    done = subprocess.run(
        [LOGPX, "convert", str(tmp_path / "weights.pt"), "--arch", str(tmp_path / "arch.json"), "--by-order",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = load_checkpoint(out).model
    x = (torch.rand(3, 784, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = ref.encoder(x.view(3, 1, 28, 28))
        mu, log_sigma = model.encode(x)
        assert torch.allclose(mu, ref.fc_mu(h), atol=1e-5) and torch.allclose(
            log_sigma, 0.5 * ref.fc_logvar(h), atol=1e-5
        )
        logits = ref.decoder(z).view(3, 784)
        want = (x * logits - F.softplus(logits)).sum(-1)
        assert torch.allclose(model.log_likelihood(x, z), want, atol=1e-3, rtol=1e-5)
    # A safetensors file keeps names sorted (decoder first): by order, the first pair does not fit.
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    wrong = subprocess.run(
        [LOGPX, "convert", str(tmp_path / "weights.safetensors"), "--arch", str(tmp_path / "arch.json"), "--by-order",
         "--out", str(tmp_path / "wrong.safetensors")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "by order: tensor 0 of weights.safetensors, decoder.0.weight" in wrong.stderr and "--names" in wrong.stderr
    assert not (tmp_path / "wrong.safetensors").exists()
