"""The seams between app and models: input shape from the checkpoint, randomness from one generator on
the model's device, dispatch by model type, a family registered without a file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from logpx.families import FAMILIES, LinearGaussian, register_family
from logpx.io import Checkpoint, save_checkpoint
from tests.helpers import DATASET, TRAINING, linear_gaussian, png_bytes, tiny_bbb

from ..helpers import make_client, wait_ready


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear-Gaussian model of 10 inputs and a classifier of 36 inputs (6 x 6 images)."""
    directory = tmp_path_factory.mktemp("small")
    save_checkpoint(directory / "lg10.safetensors", linear_gaussian(input_dim=10), training=TRAINING, dataset=DATASET)
    bbb = tiny_bbb(input_dim=36)
    save_checkpoint(directory / "bbb36.safetensors", bbb, training=TRAINING, dataset=DATASET)
    return directory


@pytest.fixture(scope="module")
def small(small_dir: Path) -> TestClient:
    with make_client(small_dir) as c:
        wait_ready(c)
        yield c  # type: ignore[misc]


def test_input_shape_comes_from_the_checkpoint(small: TestClient) -> None:
    assert small.get("/v1/models/lg10").json()["input_shape"] == [10]
    ok = small.post("/v1/models/lg10/evidence", json={"inputs": [[0.5] * 10], "estimator": {"name": "iwae", "k": 50}})
    assert ok.status_code == 200, ok.text
    assert math.isfinite(ok.json()["results"][0]["log_px"])
    wrong = small.post("/v1/models/lg10/evidence", json={"inputs": [[0.5] * 784]})
    assert wrong.status_code == 422 and wrong.json()["field"] == "inputs[0]" and "10 values" in wrong.json()["detail"]
    images = small.post(
        "/v1/models/lg10/evidence/images",
        files=[("files", ("a.png", png_bytes(torch.zeros(28, 28, dtype=torch.uint8).numpy()), "image/png"))],
    )
    assert images.status_code == 422 and "not images" in images.json()["detail"]
    infer = small.post(
        "/v2/models/lg10/infer",
        json={
            "inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP32", "data": [0.5] * 20}],
            "parameters": {"k": 50},
        },
    )
    assert infer.status_code == 200, infer.text
    assert (
        small.post(
            "/v2/models/lg10/infer",
            json={"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]},
        ).status_code
        == 422
    )


def test_classifier_input_shape_and_images(small: TestClient) -> None:
    assert small.get("/v1/models/bbb36").json()["input_shape"] == [6, 6]
    nested = [[0.0] * 6 for _ in range(6)]
    r = small.post("/v1/models/bbb36/predict", json={"inputs": [nested], "labels": [3], "k": 20})
    assert r.status_code == 200, r.text
    png = png_bytes(torch.full((6, 6), 200, dtype=torch.uint8).numpy())
    r = small.post("/v1/models/bbb36/predict/images", files=[("files", ("a.png", png, "image/png"))], data={"k": "20"})
    assert r.status_code == 200, r.text
    big = png_bytes(torch.zeros(28, 28, dtype=torch.uint8).numpy())
    r = small.post("/v1/models/bbb36/predict/images", files=[("files", ("a.png", big, "image/png"))])
    assert r.status_code == 422 and r.json()["limit"] == "6x6"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/models/bbb36/predict", {"inputs": [[0.0] * 36], "k": 10**6}, "k"),
        ("/v1/models/bbb36/predict", {"inputs": [[0.0] * 36], "k": 50, "order": 9}, "order"),
        (
            "/v2/models/lg10/infer",
            {
                "inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [0.5] * 10}],
                "parameters": {"k": 10**6},
            },
            "parameters.k",
        ),
    ],
)
def test_limit_errors_name_the_field_sent(small: TestClient, path: str, body: dict[str, object], field: str) -> None:
    r = small.post(path, json=body)
    assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_a_request_leaves_the_global_rng_alone(small: TestClient) -> None:
    before = torch.get_rng_state()
    body = {"inputs": [[0.3] * 10], "estimator": {"name": "jvi", "k": 40, "order": 2}, "seed": 3}
    first = small.post("/v1/models/lg10/evidence", json=body).json()["results"]
    small.post("/v1/models/bbb36/predict", json={"inputs": [[0.5] * 36], "labels": [1], "k": 20})
    assert torch.equal(before, torch.get_rng_state())
    torch.manual_seed(1234)  # a different global state changes nothing in the answer
    assert small.post("/v1/models/lg10/evidence", json=body).json()["results"] == first


@dataclass(frozen=True)
class _ProbeConfig:
    input_dim: int = 10
    latent: int = 2


class _Probe(LinearGaussian):
    """A test family: a linear-Gaussian model that records the device of every generator it is given."""

    family = "probe"
    seen: list[torch.device] = []  # noqa: RUF012 (shared on purpose: the test reads it)

    def __init__(self, config: _ProbeConfig, input_shape: tuple[int, ...] | None = None) -> None:
        from logpx.families import LinearGaussianConfig

        super().__init__(LinearGaussianConfig(**asdict(config)), input_shape)

    def sample_noise(self, k: int, batch: int, generator: torch.Generator) -> torch.Tensor:
        self.seen.append(generator.device)
        return super().sample_noise(k, batch, generator)


def test_a_family_registered_in_memory_is_served_and_gets_a_device_generator(checkpoint_dir: Path) -> None:
    register_family(_Probe, _ProbeConfig)
    try:
        model = _Probe(_ProbeConfig())
        with torch.no_grad():
            model.log_noise.fill_(-1.0)
        with make_client(checkpoint_dir) as c:
            wait_ready(c)
            entry = c.app.state.registry.update("probe", Checkpoint(model, {"family": "probe"}, "0" * 64, None))  # type: ignore[attr-defined]
            r = c.post(
                "/v1/models/probe/evidence", json={"inputs": [[0.5] * 10], "estimator": {"name": "iwae", "k": 30}}
            )
            assert r.status_code == 200, r.text
            assert _Probe.seen and all(d == torch.device(entry.device) for d in _Probe.seen)
            # Dispatch is by type: a latent-variable model is refused by predict, whatever its name.
            assert c.post("/v1/models/probe/predict", json={"inputs": [[0.5] * 10]}).status_code == 422
    finally:
        FAMILIES.pop("probe")


def test_rgb_models_take_rgb_uploads_channels_first(tmp_path: Path) -> None:
    """An mlp_vae of input shape [3, 4, 5] with a Gaussian likelihood: a 5x4 RGB PNG scores exactly as
    the same values sent as JSON in [C, H, W] order."""
    import io

    import numpy as np
    from PIL import Image

    from logpx.families import MLPVAE, MLPVAEConfig

    torch.manual_seed(0)
    model = MLPVAE(MLPVAEConfig(input_dim=60, latent=2, encoder=[8], decoder=[8], likelihood="gaussian"), (3, 4, 5))
    save_checkpoint(tmp_path / "rgb.safetensors", model, training=TRAINING, dataset=DATASET)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)  # H, W, C
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG")
    with make_client(tmp_path) as c:
        wait_ready(c)
        assert c.get("/v1/models/rgb").json()["input_shape"] == [3, 4, 5]
        body = {"k": "20", "seed": "1"}
        upload = c.post(
            "/v1/models/rgb/evidence/images", files=[("files", ("a.png", buf.getvalue(), "image/png"))], data=body
        )
        assert upload.status_code == 200, upload.text
        chw = (pixels.transpose(2, 0, 1) / 255.0).tolist()  # nested [3][4][5]
        as_json = c.post(
            "/v1/models/rgb/evidence", json={"inputs": [chw], "estimator": {"name": "iwae", "k": 20}, "seed": 1}
        )
        assert as_json.status_code == 200, as_json.text
        assert upload.json()["results"][0]["log_px"] == pytest.approx(as_json.json()["results"][0]["log_px"], abs=1e-5)
        assert upload.json()["binarization"]["method"] == "none"


def test_training_state_beside_a_checkpoint_is_skipped_not_failed(tmp_path: Path) -> None:
    """`logpx train --out DIR/mine.safetensors` leaves mine.state.safetensors (for --resume) in DIR: found by
    running the image on a directory `logpx train` had written."""
    from ..helpers import make_client, wait_ready

    save_checkpoint(tmp_path / "mine.safetensors", linear_gaussian(), training=TRAINING, dataset=DATASET)
    (tmp_path / "mine.state.safetensors").write_bytes(b"optimiser state")
    with make_client(tmp_path) as c:
        wait_ready(c)
        listing = c.get("/v1/models").json()
    assert [m["name"] for m in listing["models"]] == ["mine"]
    assert listing["skipped"] == [
        {
            "file": "mine.state.safetensors",
            "reason": "the optimiser state `logpx train` keeps beside a checkpoint for --resume, not a model",
        }
    ]
