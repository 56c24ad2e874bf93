"""Every endpoint through httpx against the ASGI app: success paths, status codes, problem+json."""

from __future__ import annotations

import math

import pytest
import torch
from fastapi.testclient import TestClient

from logpx.io import binarize_per_input
from logpx.io.checkpoint import load_checkpoint

from ..helpers import (
    IMAGE,
    IMAGE_28,
    assert_problem,
    digit_image,
    linear_gaussian,
    make_client,
    png_bytes,
    sample_linear_gaussian,
    wait_ready,
)


def test_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"status": "live", "models": None, "jobs": None}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"broken": "failed", "lg": "ready", "tiny": "ready", "tinybbb": "ready"}


def test_models_list_and_detail(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["tiny"]["status"] == "ready" and models["tiny"]["device"] == "cpu"
    assert models["broken"]["status"] == "failed" and "safetensors" in models["broken"]["reason"]
    detail = client.get("/v1/models/tiny").json()
    assert detail["family"] == "vae" and detail["input_shape"] == [28, 28] and len(detail["sha256"]) == 64
    assert detail["metadata"]["format_version"] == 1 and detail["defaults"]["binarize"] == "sample"
    assert_problem(client.get("/v1/models/nope"), 404, "name")
    assert_problem(client.get("/v1/models/bad%20name!"), 422, "name")


def test_evidence_flat_and_nested_inputs(client: TestClient) -> None:
    body = {"inputs": [IMAGE, IMAGE_28], "estimator": {"name": "jvi", "k": 64, "order": 2}, "seed": 3}
    r = client.post("/v1/models/tiny/evidence", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["estimator"]["order"] == 2 and [s["method"] for s in out["estimator"]["subsets"]] == ["exact", "exact"]
    # The checkpoint's protocol: draws that are a function of each input and its seed, not the request's.
    assert out["binarization"] == {"method": "sample", "threshold": None, "seed": 12345}
    threshold = client.post("/v1/models/tiny/evidence", json={**body, "binarize": "threshold"}).json()
    assert threshold["binarization"] == {"method": "threshold", "threshold": 0.5, "seed": None}
    assert out["seed"] == 3 and len(out["results"]) == 2
    for res in out["results"]:
        assert math.isfinite(res["log_px"]) and res["std_err"] > 0
        assert 1 <= res["diagnostics"]["ess"] <= 64 and res["diagnostics"]["khat"] is not None
    assert out["timing"]["compute_s"] > 0


def test_evidence_is_deterministic_in_the_seed(client: TestClient) -> None:
    body = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 100}, "seed": 11, "binarize": "sample"}
    a = client.post("/v1/models/tiny/evidence", json=body).json()
    b = client.post("/v1/models/tiny/evidence", json=body).json()
    c = client.post("/v1/models/tiny/evidence", json={**body, "seed": 12}).json()
    assert a["results"] == b["results"]
    assert a["results"][0]["log_px"] != c["results"][0]["log_px"]
    assert a["binarization"] == {"method": "sample", "threshold": None, "seed": 12345}  # the protocol's, not 11


def test_evidence_matches_the_library_on_the_same_draw(client: TestClient, checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    """The service adds no math: its answer is the estimator applied to the model's log-weights."""
    from logpx import EstimatorSpec, estimate

    model = load_checkpoint(checkpoint_dir / "tiny.safetensors").model
    x = binarize_per_input(torch.tensor([IMAGE]), 12345)  # the checkpoint's protocol, a function of the image
    g = torch.Generator().manual_seed(5)  # the request's seed governs the estimator's draws alone
    with torch.inference_mode():
        want = estimate(model.log_weights(x, 50, g).double(), EstimatorSpec("jvi", 50, 1)).log_px.item()
    got = client.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 50}, "seed": 5}
    ).json()
    assert got["results"][0]["log_px"] == pytest.approx(want, abs=1e-9)


def test_byte_scale_and_bernoulli_guard(client: TestClient) -> None:
    as_bytes = digit_image().reshape(-1).tolist()
    r = client.post(
        "/v1/models/tiny/evidence", json={"inputs": [as_bytes], "scale": "byte", "estimator": {"name": "elbo", "k": 10}}
    )
    assert r.status_code == 200 and r.json()["estimator"]["name"] == "elbo"
    grey = [0.3] * 784
    assert_problem(
        client.post("/v1/models/tiny/evidence", json={"inputs": [grey], "binarize": "none"}), 422, "binarize"
    )
    binary = [float(v > 0.5) for v in IMAGE]
    assert (
        client.post(
            "/v1/models/tiny/evidence",
            json={"inputs": [binary], "binarize": "none", "estimator": {"name": "iwae", "k": 10}},
        ).status_code
        == 200
    )


def test_linear_gaussian_brackets_exact_log_px_over_http(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    """The estimators over HTTP: IWAE below the exact log p(x) and rising towards it with k; JVI closer.

    400 replicates: the per-replicate sd of IWAE-16 is at most 0.9 nats here, so each mean has a
    standard error under 0.045, against biases of 0.12 nats and more (measured once, seed fixed).
    """
    model = linear_gaussian()
    x = sample_linear_gaussian(model, 3, seed=0)
    exact = model.exact_log_px(x)
    body = {
        "inputs": x.tolist(),
        "estimators": [{"name": "iwae", "k": 4}, {"name": "iwae", "k": 16}, {"name": "jvi", "k": 16, "order": 1}],
        "replicates": 400,
        "seed": 1,
    }
    with make_client(checkpoint_dir, max_replicates=400) as c:
        wait_ready(c)
        r = c.post("/v1/models/lg/compare", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["binarization"]["method"] == "none"
    iwae4, iwae16, jvi16 = out["estimators"]
    for i in range(3):
        truth = exact[i].item()
        se4, se16 = (s["sd"][i] / math.sqrt(400) for s in (iwae4, iwae16))
        assert iwae4["mean"][i] + 3 * se4 < truth
        assert iwae16["mean"][i] + 3 * se16 < truth
        assert iwae4["mean"][i] < iwae16["mean"][i]
        assert abs(jvi16["mean"][i] - truth) < abs(iwae16["mean"][i] - truth)


def test_compare_uses_common_random_numbers(client: TestClient) -> None:
    body = {
        "inputs": [IMAGE],
        "estimators": [{"name": "iwae", "k": 20}, {"name": "iwae", "k": 20}],
        "replicates": 5,
        "reference": {"name": "iwae", "k": 20},
        "seed": 2,
    }
    out = client.post("/v1/models/tiny/compare", json=body).json()
    a, b = out["estimators"]
    assert a["mean"] == b["mean"] and a["sd"] == b["sd"]
    assert a["diff_to_reference"] == [0.0] and out["reference"]["mean"] == a["mean"]


def test_images_upload(client: TestClient) -> None:
    files = [
        ("files", ("a.png", png_bytes(digit_image()), "image/png")),
        ("files", ("b.jpg", png_bytes(digit_image(1), fmt="JPEG"), "image/jpeg")),
    ]
    r = client.post("/v1/models/tiny/evidence/images", files=files, data={"estimator": "jvi", "k": "40", "order": "1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["results"]) == 2 and out["estimator"]["name"] == "jvi"
    # The PNG and the JSON route agree on the same pixels (same request shape: one image).
    png_only = client.post(
        "/v1/models/tiny/evidence/images", files=files[:1], data={"estimator": "jvi", "k": "40", "order": "1"}
    ).json()
    json_out = client.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "jvi", "k": 40, "order": 1}}
    ).json()
    assert png_only["results"][0]["log_px"] == json_out["results"][0]["log_px"]


def test_every_estimate_on_an_image_model_also_reads_in_bits_per_dimension(client: TestClient) -> None:
    """A binary image's log-probability as -log2 p(x) / D: the unit image models are compared in."""
    out = client.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 30}}
    ).json()
    (r,) = out["results"]
    assert r["bits_per_dim"] == pytest.approx(-r["log_px"] / (784 * math.log(2)))


def test_infer_v2_matches_evidence(client: TestClient) -> None:
    body = {
        "id": "r1",
        "inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "data": IMAGE}],
        "parameters": {"estimator": "iwae", "k": 30, "seed": 4},
    }
    r = client.post("/v2/models/tiny/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_name"] == "tiny"
    outputs = {o["name"]: o for o in out["outputs"]}
    assert outputs["log_px"]["shape"] == [1] and outputs["log_px"]["datatype"] == "FP64"
    ev = client.post(
        "/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 30}, "seed": 4}
    ).json()
    assert outputs["log_px"]["data"][0] == ev["results"][0]["log_px"]
    assert client.get("/v2/models/tiny/ready").json() == {"name": "tiny", "ready": True}
    # What the metadata declares is what infer takes and answers (docs/api.md's example once differed).
    meta = client.get("/v2/models/tiny").json()
    (declared,) = meta["inputs"]
    assert declared["name"] == "inputs" and declared["shape"] == [-1, 28, 28]
    assert [(o["name"], o["datatype"]) for o in out["outputs"]] == [(o["name"], o["datatype"]) for o in meta["outputs"]]
    assert_problem(
        client.post("/v2/models/tiny/infer", json={**body, "parameters": {"bogus": 1}}), 422, "parameters.bogus"
    )


def test_evidence_on_failed_model_is_503(client: TestClient) -> None:
    assert_problem(client.post("/v1/models/broken/evidence", json={"inputs": [IMAGE]}), 503, "name")


def test_metrics(client: TestClient) -> None:
    client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 10}})
    text = client.get("/metrics").text
    assert 'logpx_requests_total{endpoint="/v1/models/{name}/evidence",model="tiny",status="200"}' in text
    assert "logpx_importance_samples_total" in text and "logpx_compute_seconds_bucket" in text


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/evidence",
        "/v1/models/{name}/evidence/images",
        "/v1/models/{name}/compare",
        "/metrics",
        "/v2/models/{name}/infer",
    ]:
        assert path in paths, path
    ev = paths["/v1/models/{name}/evidence"]["post"]
    assert "EvidenceRequest" in str(ev["requestBody"]) and "EvidenceResponse" in str(ev["responses"]["200"])
    assert "application/problem+json" in ev["responses"]["413"]["content"]


def test_jvi_that_cannot_be_exact_is_refused_with_the_largest_exact_k(client: TestClient) -> None:
    """JVI order 3 at k = 200: C(200, 3) subsets are too many to list, and a random subset of them cannot
    bound its own error, so the request is refused (422) naming the order and the largest exact k; at
    that k every term is exact and says so, in evidence and in compare."""
    estimator = {"name": "jvi", "k": 200, "order": 3}
    r = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": estimator})
    assert_problem(r, 422, "estimator.order")
    largest = r.json()["limit"]["largest_k"]
    assert 3 < largest < 200 and f"k <= {largest}" in r.json()["detail"]
    r = client.post(
        "/v1/models/tiny/compare",
        json={"inputs": [IMAGE], "estimators": [{"name": "iwae", "k": 10}, estimator], "replicates": 2},
    )
    assert_problem(r, 422, "estimators[1].order")
    ok = {"name": "jvi", "k": largest, "order": 3}
    ev = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE], "estimator": ok}).json()
    assert [(s["left_out"], s["method"]) for s in ev["estimator"]["subsets"]] == [
        (1, "exact"),
        (2, "exact"),
        (3, "exact"),
    ]
    assert ev["results"][0]["verdict"]["level"] in ("reliable", "caution", "unreliable")
