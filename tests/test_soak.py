"""A short soak: 16 clients, valid and invalid requests mixed, for a few seconds against a real server."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import run

from .helpers import write_checkpoints


def test_short_soak(tmp_path: Path) -> None:
    result = run(str(write_checkpoints(tmp_path / "ckpt")), "tiny", duration=12, clients=16, max_requests=5000)
    assert result["requests"] >= 200, result
    assert result["unexpected"] == {}, result
    assert set(result["statuses"]) <= {"200", "404", "413", "415", "422"}
    assert result["rss_growth"] < 0.10, result
