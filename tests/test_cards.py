"""The model cards' quick-check figures reproduce: the evaluation command on each shipped checkpoint, on
the committed held-out digits, gives back the recorded mean within its Monte Carlo standard error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logpx.evaluation.evaluate import main as evaluate_main

ROOT = Path(__file__).resolve().parents[1]
QUICK = sorted((ROOT / "checkpoints" / "cards").glob("*.quick.json"))
pytestmark = pytest.mark.slow


def test_every_shipped_checkpoint_has_a_card() -> None:
    shipped = {p.stem for p in (ROOT / "checkpoints").glob("*.safetensors")}
    carded = {
        p.name.removesuffix(".json")
        for p in (ROOT / "checkpoints" / "cards").glob("*.json")
        if ".quick" not in p.name and ".ais" not in p.name
    }
    assert shipped and shipped == carded


@pytest.mark.parametrize("card", QUICK, ids=[p.name.removesuffix(".quick.json") for p in QUICK])
def test_quick_check_reproduces(card: Path) -> None:
    recorded = json.loads(card.read_text())
    name = card.name.removesuffix(".quick.json")
    data = ROOT / "tests" / "data" / ("fashion-valid200" if name.startswith("fashion-") else "mnist-valid200")
    out = evaluate_main(
        [
            str(ROOT / "checkpoints" / f"{name}.safetensors"),
            "--data",
            str(data),
            "--split",
            "valid200",
            "--limit",
            str(recorded["images"]),
            "--estimators",
            "iwae:1000",
            "--seed",
            str(recorded["seed"]),
        ]
    )
    want, got = recorded["estimators"]["iwae-1000"], out["estimators"]["iwae-1000"]
    assert abs(got["mean"] - want["mean"]) <= max(want["mc_se_of_mean"], 1e-3), (got, want)
