"""A new sampler is one module: a ``Sampler`` value for the plan's grammar and the HTTP ``sampler`` object,
and its ``draw``. This one (independence sampling from the prior, so log w = log p(x | z)) is defined here,
in the test, and served through evidence, compare and a job without a line of ``app/`` knowing it."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from logpx.families import LatentVariableModel
from logpx.io import load_checkpoint
from logpx.plan import Entry, Plan, Sampler
from logpx.runtime import CheckFn
from logpx.samplers import Draw, draw

from ..helpers import make_client, sample_linear_gaussian, wait_ready


@dataclass(frozen=True)
class Independent(Sampler):
    """k latents from the prior p(z), whatever the input: a proposal that ignores x."""

    name: ClassVar[str] = "independent"


@draw.register
def _independent(
    sampler: Independent,
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    *,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> Draw:
    z = model.sample_prior((k, x.shape[0]), generator).to(x.dtype)
    return Draw(model.log_likelihood(x, z), None)


@pytest.fixture(scope="module")
def served(checkpoint_dir: Path) -> tuple[TestClient, list[list[float]], torch.Tensor]:
    model = load_checkpoint(checkpoint_dir / "lg.safetensors").model
    x = sample_linear_gaussian(model, 3, seed=4)  # type: ignore[arg-type]
    with torch.no_grad():  # in float64: 784 terms of about 1.5 nats each lose a tenth of a nat in float32
        exact = model.double().exact_log_px(x.double())  # type: ignore[operator]
    with make_client(checkpoint_dir) as client:
        wait_ready(client)
        yield client, x.tolist(), exact


def test_the_grammar_knows_it_at_once() -> None:
    entry = Entry.parse("iwae:64@independent")
    assert isinstance(entry.sampler, Independent) and str(Plan((entry,))) == "iwae:64@independent"


def test_evidence_and_compare_run_it(served: tuple[TestClient, list[list[float]], torch.Tensor]) -> None:
    client, x, exact = served
    body = {"inputs": x, "estimator": {"name": "iwae", "k": 2000}, "sampler": {"name": "independent"}, "seed": 1}
    out = client.post("/v1/models/lg/evidence", json=body)
    assert out.status_code == 200, out.text
    assert out.json()["estimator"]["sampler"]["name"] == "independent"
    for result, truth in zip(out.json()["results"], exact.tolist(), strict=True):
        # This model's latent moves x little (W ~ 0.02 against noise 0.05), so the prior is a fair proposal:
        # the estimate lies within its standard error of the exact evidence, and carries its verdict.
        assert abs(result["log_px"] - truth) < 4 * result["std_err"] + 0.01, (result, truth)
        assert result["verdict"]["level"] in ("reliable", "caution", "unreliable") and "khat" in result["diagnostics"]
    compare = {
        "inputs": x[:1],
        "estimators": [{"name": "iwae", "k": 50, "sampler": {"name": "independent"}}, {"name": "iwae", "k": 50}],
        "replicates": 2,
    }
    r = client.post("/v1/models/lg/compare", json=compare)
    assert r.status_code == 200, r.text
    assert [s["estimator"]["sampler"]["name"] for s in r.json()["estimators"]] == ["independent", "importance"]
    # Settings it does not take are refused, naming the field; so is a sampler nobody registered.
    bad = client.post("/v1/models/lg/evidence", json={**body, "sampler": {"name": "independent", "steps": 3}})
    assert bad.status_code == 422 and "independent" in bad.text
    assert client.post("/v1/models/lg/evidence", json={**body, "sampler": {"name": "mcmc"}}).status_code == 422


def test_a_job_runs_it(served: tuple[TestClient, list[list[float]], torch.Tensor]) -> None:
    client, x, _ = served
    data = np.asarray(x, dtype=np.float32)
    form = {"model": "lg", "estimators": ["iwae:20@independent", "iwae:20"], "seed": "3", "binarize": "none"}
    buffer = io.BytesIO()
    np.save(buffer, data)
    r = client.post("/v1/jobs", data=form, files={"data": ("x.npy", buffer.getvalue(), "application/octet-stream")})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 60
    while (status := client.get(f"/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "succeeded", status["error"]
    rows = [json.loads(line) for line in client.get(f"/v1/jobs/{job}/results").text.splitlines()]
    assert [e["estimator"] for e in rows[0]["estimates"]] == ["iwae:20@independent", "iwae:20"]
    assert len(rows) == 3 and all(e["verdict"]["level"] for r in rows for e in r["estimates"])
