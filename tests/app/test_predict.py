"""The Bayes-by-Backprop family over HTTP: predict (JSON and images), and evidence pointing to predict."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from ..helpers import IMAGE, assert_problem, digit_image, png_bytes


def test_predict_probabilities_and_entropy_split(client: TestClient) -> None:
    r = client.post(
        "/v1/models/tinybbb/predict", json={"inputs": [IMAGE, IMAGE], "labels": [3, 8], "k": 40, "order": 2, "seed": 1}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["k"] == 40 and len(out["predictions"]) == 2
    for p in out["predictions"]:
        assert len(p["probs"]) == 10 and math.isclose(sum(p["probs"]), 1.0, rel_tol=1e-6)  # float32 softmax
        assert p["predicted"] == max(range(10), key=lambda c: p["probs"][c])
        e = p["entropy"]
        assert e["epistemic"] >= 0 and math.isclose(e["total"], e["aleatoric"] + e["epistemic"], abs_tol=1e-9)
        ll = p["log_likelihood"]
        assert ll["iwae"] <= 0 and math.isfinite(ll["jvi"]) and ll["std_err"] >= 0 and ll["diagnostics"]["ess"] >= 1
        assert math.isclose(ll["iwae"], math.log(p["probs"][ll["label"]]), abs_tol=1e-6)  # the same k draws
    again = client.post(
        "/v1/models/tinybbb/predict", json={"inputs": [IMAGE, IMAGE], "labels": [3, 8], "k": 40, "order": 2, "seed": 1}
    )
    assert again.json()["predictions"] == out["predictions"]


def test_predict_images_and_errors(client: TestClient) -> None:
    files = [("files", ("a.png", png_bytes(digit_image()), "image/png"))]
    r = client.post("/v1/models/tinybbb/predict/images", files=files, data={"labels": ["4"], "k": "20"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["log_likelihood"]["label"] == 4
    assert_problem(
        client.post("/v1/models/tinybbb/predict", json={"inputs": [IMAGE], "labels": [10]}), 422, "labels[0]"
    )
    assert_problem(client.post("/v1/models/tinybbb/predict", json={"inputs": [IMAGE], "labels": [1, 2]}), 422, "labels")
    assert_problem(
        client.post("/v1/models/tinybbb/predict", json={"inputs": [IMAGE], "k": 5, "order": 5}), 422, "order"
    )
    body = assert_problem(client.post("/v1/models/tinybbb/evidence", json={"inputs": [IMAGE]}), 422, "name")
    assert "/v1/models/tinybbb/predict" in body["detail"]
    assert_problem(client.post("/v1/models/tiny/predict", json={"inputs": [IMAGE]}), 422, "name")
    detail = client.get("/v1/models/tinybbb").json()
    assert (
        detail["family"] == "bbb"
        and detail["likelihood"] == "categorical"
        and detail["metadata"]["arch"]["hidden"] == [16]
    )
