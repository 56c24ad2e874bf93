"""ruff over the code: no unused or undefined names, no syntax errors, sorted imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", "app", "models", "benchmarks", "tests", "checkpoints"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
