"""The layer-list VAE (``layered_vae``): convolutional, residual and normalising networks described by data.
Its log-weights equal an independent torch.nn + torch.distributions computation of the same network from the
same state dict on the same noise; descriptions that lie about shapes or sizes are one clear error, refused
before anything is allocated; a checkpoint of it is served."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch import distributions as D
from torch import nn

from logpx.families import LayeredVAE, LayeredVAEConfig, build_model
from logpx.io.checkpoint import save_checkpoint
from tests.helpers import DATASET, IMAGE, TRAINING, make_client, wait_ready

LATENT = 6
ENCODER = [
    {"type": "conv2d", "out": 8, "kernel": 4, "stride": 2, "padding": 1},  # 8 x 14 x 14
    "relu",
    {"type": "groupnorm", "groups": 2},
    {"type": "conv2d", "out": 16, "kernel": 4, "stride": 2, "padding": 1},  # 16 x 7 x 7
    {"type": "batchnorm"},
    "elu",
    {"type": "residual", "layers": [{"type": "conv2d", "out": 16, "kernel": 3, "padding": 1}, "relu"]},
    "flatten",
    {"type": "linear", "out": 32},
    "tanh",
    {"type": "layernorm"},
]
DECODER = [
    {"type": "linear", "out": 16 * 7 * 7},
    "relu",
    {"type": "unflatten", "shape": [16, 7, 7]},
    {"type": "residual", "layers": [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1}], "project": True},
    {"type": "upsample", "scale": 2},  # 8 x 14 x 14
    {"type": "conv_transpose2d", "out": 1, "kernel": 4, "stride": 2, "padding": 1},  # 1 x 28 x 28
    {"type": "dropout", "p": 0.3},
]


class Skip(nn.Module):
    def __init__(self, body: nn.Module, project: nn.Module | None) -> None:
        super().__init__()
        self.body, self.project = body, project

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.project is None else self.project(x))


def independent() -> nn.ModuleDict:
    """The same network written out by hand: what a researcher's own conv VAE module would hold."""
    encoder = nn.Sequential(
        nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.GroupNorm(2, 8), nn.Conv2d(8, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ELU(),
        Skip(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()), None), nn.Flatten(), nn.Linear(784, 32),
        nn.Tanh(), nn.LayerNorm([32]),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(LATENT, 784), nn.ReLU(), nn.Unflatten(1, (16, 7, 7)),
        Skip(nn.Sequential(nn.Conv2d(16, 8, 3, padding=1)), nn.Conv2d(16, 8, 1)), nn.Upsample(scale_factor=2),
        nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Dropout(0.3),
    )  # fmt: skip
    return nn.ModuleDict(
        {"encoder": encoder, "mu": nn.Linear(32, LATENT), "scale": nn.Linear(32, LATENT), "decoder": decoder}
    ).eval()


def _pair(dtype: torch.dtype) -> tuple[LayeredVAE, nn.ModuleDict]:
    torch.manual_seed(0)
    model = LayeredVAE(LayeredVAEConfig(latent=LATENT, encoder=ENCODER, decoder=DECODER), (1, 28, 28))
    bn = model.encoder[4]
    with torch.no_grad():  # inference statistics that are not the defaults
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    ref = independent()
    ref.load_state_dict(model.state_dict())  # the same names, by the lists' positions
    return model.to(dtype), ref.to(dtype)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_log_weights_equal_an_independent_computation(dtype: torch.dtype, rtol: float) -> None:
    model, ref = _pair(dtype)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 784, generator=g) < 0.3).to(dtype)
    eps = torch.randn(5, 3, LATENT, generator=g, dtype=dtype)
    with torch.no_grad():
        got = model.log_weights_from_noise(x, eps)
        h = ref["encoder"](x.reshape(-1, 1, 28, 28))
        mu, log_var = ref["mu"](h), ref["scale"](h)
        q = D.Normal(mu, torch.exp(0.5 * log_var))
        z = mu + torch.exp(0.5 * log_var) * eps  # [5, 3, latent]
        logits = ref["decoder"](z.reshape(-1, LATENT)).reshape(5, 3, 784)
        want = (
            D.Bernoulli(logits=logits).log_prob(x).sum(-1)
            + D.Normal(0.0, 1.0).log_prob(z).sum(-1)
            - q.log_prob(z).sum(-1)
        )
    torch.testing.assert_close(got, want, rtol=rtol, atol=0.0)


@pytest.mark.parametrize(
    ("encoder", "decoder", "message"),
    [
        (ENCODER, DECODER[:-2], "decoder: its output is [8, 14, 14]; the model's input is [1, 28, 28], so it must be"),
        ([{"type": "linear", "out": 4}], DECODER, "encoder[0] (linear): takes a flat input, got [1, 28, 28]"),
        ([{"type": "conv2d", "out": 4, "kernel": 40}], DECODER, "encoder[0]: does not fit its input [1, 28, 28]"),
        ([{"type": "residual", "layers": [{"type": "conv2d", "out": 3, "kernel": 1}]}], DECODER, 'add "project": true'),
        (["flatten", {"type": "linear", "out": 10**6}, {"type": "linear", "out": 10**6}], DECODER, "over the limit"),
        (["softmaxx"], DECODER, "'softmaxx' is not an activation"),
    ],
)
def test_descriptions_that_lie_are_one_clear_error_before_any_allocation(encoder, decoder, message) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(ValueError, match=None) as info:
        build_model("layered_vae", {"latent": LATENT, "encoder": encoder, "decoder": decoder}, [1, 28, 28])
    assert message in str(info.value) and "\n" not in str(info.value)
    assert time.monotonic() - started < 1.0  # 10^12 parameters are counted on the meta device, never allocated


def test_a_convolutional_checkpoint_is_served_with_importance_sampling_and_ais(tmp_path: Path) -> None:
    model, _ = _pair(torch.float32)
    save_checkpoint(tmp_path / "conv.safetensors", model, training=TRAINING, dataset=DATASET)
    with make_client(tmp_path) as client:
        wait_ready(client)
        assert client.get("/v1/models/conv").json()["status"] == "ready"
        body = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 100}, "seed": 0}
        iwae = client.post("/v1/models/conv/evidence", json=body).json()["results"][0]
        ais = client.post(
            "/v1/models/conv/evidence", json={**body, "sampler": {"name": "ais", "steps": 20, "leapfrog": 5}}
        ).json()["results"][0]
    assert iwae["log_px"] < 0 and ais["log_px"] < 0 and ais["sampler_stats"]["acceptance"] > 0


def test_the_discretised_logistic_is_a_probability_over_the_256_values() -> None:
    """PixelCNN++'s binned logistic: the 256 bins' probabilities, computed in log space without cancellation,
    equal an independent float64 computation by plain CDF differences, and sum to 1 for any mean and scale."""
    from logpx.families.likelihoods import discretized_logistic_log_prob

    x = torch.arange(256, dtype=torch.float64) / 255
    for mean, log_scale in ((0.0, -2.0), (0.7, -4.0), (-0.95, -1.0), (0.3, -6.0)):
        got = discretized_logistic_log_prob(x, torch.tensor(mean, dtype=torch.float64), log_scale)
        c = 2 * x - 1
        scale = math.exp(log_scale)
        hi, lo = torch.sigmoid((c + 1 / 255 - mean) / scale), torch.sigmoid((c - 1 / 255 - mean) / scale)
        p = torch.where(x == 0, hi, torch.where(x == 1, 1 - lo, hi - lo))
        fine = p > 1e-6  # where plain differences of numbers near 1 keep ten digits
        torch.testing.assert_close(got[fine], torch.log(p[fine]), rtol=1e-9, atol=1e-9)
        assert float(torch.logsumexp(got, 0)) == pytest.approx(0.0, abs=1e-9) and bool((got <= 0).all())
    far = discretized_logistic_log_prob(torch.tensor([128 / 255], dtype=torch.float64), torch.tensor(-0.9), -6.0)
    assert torch.isfinite(far).all() and float(far) < -100  # the far tail in log space, never log(0)
    # The end bins far from the mean, on either side, in float32 as models run: log sigmoid of the edge, to its
    # last digits (near 0 and near the edge's value alike), and a finite gradient in every bin.
    mean = torch.tensor([-3.0, 3.0, 3.0, -3.0, 0.2], requires_grad=True)
    ends = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5])
    ends = torch.round(ends * 255) / 255
    got = discretized_logistic_log_prob(ends, mean, -3.0)
    edge = torch.tensor([(-1 + 1 / 255 + 3) / math.exp(-3), (-1 + 1 / 255 - 3) / math.exp(-3)], dtype=torch.float64)
    expected = torch.cat([torch.nn.functional.logsigmoid(edge), torch.nn.functional.logsigmoid(edge)])
    torch.testing.assert_close(got[:4].double(), expected, rtol=1e-6, atol=0.0)
    got.sum().backward()
    assert mean.grad is not None and torch.isfinite(mean.grad).all(), mean.grad


def test_an_8_bit_model_scores_integers_in_bits_per_dimension(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LayeredVAEConfig(latent=LATENT, encoder=ENCODER, decoder=DECODER, likelihood="discretized_logistic",
                              gaussian_scale="learned")  # fmt: skip
    model = LayeredVAE(config, (1, 28, 28))
    assert model.discrete  # log P(x) <= 0: a value above 0 nats is impossible, and the verdict says so
    save_checkpoint(tmp_path / "eight.safetensors", model, training=TRAINING, dataset=DATASET)
    pixels = torch.randint(0, 256, (784,), generator=torch.Generator().manual_seed(3)).tolist()
    with make_client(tmp_path) as client:
        wait_ready(client)
        assert client.get("/v1/models/eight").json()["domain"] == "uint8"
        body = {"inputs": [pixels], "scale": "byte", "estimator": {"name": "iwae", "k": 50}}
        (r,) = client.post("/v1/models/eight/evidence", json=body).json()["results"]
        off_grid = client.post("/v1/models/eight/evidence", json={**body, "inputs": [[0.5] * 784], "scale": "unit"})
    assert r["log_px"] < 0 and r["bits_per_dim"] == pytest.approx(-r["log_px"] / (784 * math.log(2)))
    assert off_grid.status_code == 422 and "k / 255" in off_grid.json()["detail"]
