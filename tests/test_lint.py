"""Static checks in the suite: ruff's lint rules and formatter, and mypy over the shipped packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["app", "models", "benchmarks", "tests", "checkpoints"]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name(args[0])), *args[1:]], cwd=cwd, capture_output=True, text=True
    )


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = _run("ruff", "format", "--check", *PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean(tmp_path: Path) -> None:
    """The model-family types do real work: for example, calling ``log_weights`` on a classifier fails here.

    mypy cannot follow the editable install's import hook, so it reads the package as the wheel lays it out:
    a ``logpx`` folder of links to models/ with app/ as ``logpx/app``. Options: [tool.mypy] in pyproject.toml.
    """
    package = tmp_path / "logpx"
    package.mkdir()
    for entry in (ROOT / "models").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "app").symlink_to(ROOT / "app")
    result = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "logpx", cwd=tmp_path)
    report = (result.stdout + result.stderr).replace("logpx/app/", "app/").replace("logpx/", "models/")
    assert result.returncode == 0, report
