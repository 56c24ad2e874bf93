"""The project installs as one package, ``logpx``: a wheel built from the repository and installed into a fresh
virtual environment imports the estimator core, runs the CLI, and puts nothing named ``app`` or ``models`` in
site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so that the build leaves nothing (build/, *.egg-info) in the working tree.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("app", "models"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, source)
    (built,) = out.glob("logpx-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"logpx"}
    assert "logpx/estimators/evidence.py" in names and "logpx/app/main.py" in names
    # Every package of the source tree is in the wheel, the job store's migrations included.
    for init in [*(ROOT / "models").rglob("__init__.py"), *(ROOT / "app").rglob("__init__.py")]:
        top, *rest = init.relative_to(ROOT).parts
        assert "/".join(["logpx", *(["app"] if top == "app" else []), *rest]) in names, init
    assert "logpx/app/jobs/migrations/versions/0001_jobs.py" in names
    assert "logpx/app/jobs/migrations/script.py.mako" in names


def test_installed_into_a_fresh_environment(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    _run(sys.executable, "-m", "venv", env)
    python = env / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # Dependencies (torch, fastapi, ...) come from this test's environment by a path entry: installing them
    # again would take minutes, and only where the path lies matters. A path entry runs no .pth files of its
    # own, so this environment's editable `logpx` stays out of sight.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    assert not (site / "app").exists() and not (site / "models").exists()
    assert (site / "logpx" / "__init__.py").exists()

    script = (
        "import torch, logpx\n"
        f"assert logpx.__file__.startswith({str(site)!r}), logpx.__file__\n"
        "from logpx import estimate, iwae, jvi, khat, EstimatorSpec\n"
        "log_w = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))\n"
        "result = estimate(log_w, EstimatorSpec('jvi', 200, 1))\n"
        "print(result.verdicts[0].level, float(iwae(log_w)[0]))\n"
        "import logpx.app.main\n"
    )
    out = _run(python, "-c", script, cwd=tmp_path)  # not the repository: its folders must not be importable
    level, value = out.split()
    assert level in {"reliable", "caution", "unreliable"} and float(value) > 0
    assert "logpx serve" in _run(env / "bin" / "logpx", "--help", cwd=tmp_path)
