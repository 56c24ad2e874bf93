"""``POST /v1/estimate``: the estimators on the client's own log-weights, equal to the library's."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import save

from logpx.estimators import EstimatorSpec, estimate

from ..helpers import assert_problem

LOG_W = -90 + 3 * torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
SPECS = [
    ("elbo", None, None),
    ("iwae", None, None),
    ("iwae", 50, None),
    ("jvi", None, 1),
    ("jvi", 100, 2),
    ("jvi", 40, 3),
]


def _library(name: str, k: int | None, order: int | None, log_w: torch.Tensor, discrete: bool = False) -> list[float]:
    est = estimate(log_w, EstimatorSpec(name, k or log_w.shape[0], order or 1), discrete=discrete)  # type: ignore[arg-type]
    return est.log_px.tolist()


def test_json_equals_the_library_for_every_estimator(client: TestClient) -> None:
    body = {
        "log_weights": LOG_W.tolist(),
        "estimators": [{"name": n, **({"k": k} if k else {}), **({"order": o} if o else {})} for n, k, o in SPECS],
        "discrete": True,
    }
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["k"] == 200 and out["inputs"] == 3
    for (name, k, order), got in zip(SPECS, out["estimators"], strict=True):
        want = _library(name, k, order, LOG_W, discrete=True)
        assert [res["log_px"] for res in got["results"]] == pytest.approx(want, abs=1e-9), name
        assert all(res["verdict"]["level"] in ("reliable", "caution", "unreliable") for res in got["results"])
        assert got["estimator"]["k"] == (k or 200)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["application/x-npy", "application/vnd.safetensors"])
def test_binary_bodies_equal_the_library(client: TestClient, kind: str, dtype: type) -> None:
    array = LOG_W.numpy().astype(dtype)
    if kind == "application/x-npy":
        buf = io.BytesIO()
        np.save(buf, array)
        data = buf.getvalue()
    else:
        data = save({"log_weights": array})
    r = client.post("/v1/estimate?estimator=iwae&estimator=jvi:100:2", content=data, headers={"content-type": kind})
    assert r.status_code == 200, r.text
    got = r.json()["estimators"]
    as_sent = torch.from_numpy(array.astype(np.float64))
    assert [x["log_px"] for x in got[0]["results"]] == pytest.approx(_library("iwae", None, None, as_sent), abs=1e-9)
    assert [x["log_px"] for x in got[1]["results"]] == pytest.approx(_library("jvi", 100, 2, as_sent), abs=1e-9)


def test_minus_infinity_rows_are_zero_weights(client: TestClient) -> None:
    log_w = LOG_W.clone()
    log_w[:10, 1] = -math.inf
    buf = io.BytesIO()
    np.save(buf, log_w.numpy())
    r = client.post(
        "/v1/estimate?estimator=jvi::1", content=buf.getvalue(), headers={"content-type": "application/x-npy"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["estimators"][0]["results"][1]["log_px"] == pytest.approx(
        _library("jvi", None, 1, log_w)[1], abs=1e-9
    )


def test_bad_log_weights_are_422_naming_the_column(client: TestClient) -> None:
    log_w = LOG_W.numpy().copy()
    log_w[5, 2] = np.nan
    buf = io.BytesIO()
    np.save(buf, log_w)
    r = client.post("/v1/estimate", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert_problem(r, 422, "body[:, 2]")
    assert_problem(client.post("/v1/estimate", json={"log_weights": [[1.0, 2.0], [3.0]]}), 422, "log_weights")
    assert_problem(
        client.post("/v1/estimate", json={"log_weights": [[1.0], [2.0]], "estimators": [{"name": "iwae", "k": 5}]}),
        422,
        "estimators[0].k",
    )
    big_k = {"log_weights": LOG_W.tolist(), "estimators": [{"name": "jvi", "order": 3}]}
    assert_problem(client.post("/v1/estimate", json=big_k), 422, "estimators[0].order")  # C(200, 3) is not exact
    ints = io.BytesIO()
    np.save(ints, np.zeros((4, 2), dtype=np.int64))
    assert_problem(
        client.post("/v1/estimate", content=ints.getvalue(), headers={"content-type": "application/x-npy"}), 422, "body"
    )
    two = save({"a": np.zeros((4, 2)), "b": np.zeros((4, 2))})
    assert_problem(
        client.post("/v1/estimate", content=two, headers={"content-type": "application/vnd.safetensors"}), 422, "body"
    )
    assert_problem(
        client.post("/v1/estimate", content=b"junk", headers={"content-type": "application/x-npy"}), 422, "body"
    )
    assert_problem(client.post("/v1/estimate", content=b"x", headers={"content-type": "text/csv"}), 415, "Content-Type")
    assert_problem(
        client.post("/v1/estimate?estimator=iwae:x", content=b"x", headers={"content-type": "application/x-npy"}),
        422,
        "body",
    )
