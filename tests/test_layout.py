"""The layers stay layers: the estimator core imports no model family or I/O, and the app uses only the
public entry points of each sub-package of ``logpx`` (models/; app/ is ``logpx.app``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {
    "logpx.estimators",
    "logpx.families",
    "logpx.io",
    "logpx.runtime",
    "logpx.samplers",
    "logpx.training",
    "logpx.evaluation",
    "logpx.plan",
    "logpx.certificate",
}
# The installed name of each repository folder (pyproject.toml, [tool.setuptools] package-dir).
INSTALLED = {"models": "logpx", "app": "logpx.app"}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved against its package)."""
    top, *rest = path.relative_to(ROOT).with_suffix("").parts[:-1]
    package = ".".join([INSTALLED.get(top, top), *rest])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out += [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    return out


def test_the_plan_and_the_core_know_no_http() -> None:
    """The plan and the estimator core (verdicts and their advice included) name no URL, route or server."""
    for path in [ROOT / "models" / "plan.py", *(ROOT / "models" / "estimators").glob("*.py")]:
        text = path.read_text()
        assert "/v1/" not in text and "POST " not in text and "{name}" not in text, path.name
        assert not any(m.startswith(("fastapi", "httpx", "logpx.app")) for m in _imports(path)), path.name


def test_no_test_module_imports_another_or_a_conftest() -> None:
    """Shared test code lives in helper modules (tests/helpers.py and the like), never in a test or conftest."""
    for path in (ROOT / "tests").rglob("*.py"):
        for module in _imports(path):
            last = module.rsplit(".", 1)[-1]
            assert not (module.startswith("tests") and (last.startswith("test_") or last == "conftest")), (
                f"{path.relative_to(ROOT)} imports {module}"
            )


def test_estimators_import_no_family_io_or_app() -> None:
    for path in (ROOT / "models" / "estimators").glob("*.py"):
        for module in _imports(path):
            assert not module.startswith(
                ("logpx.families", "logpx.io", "logpx.samplers", "logpx.training", "logpx.app")
            ), f"{path.name} imports {module}"


def test_app_imports_only_public_entry_points() -> None:
    for path in (ROOT / "app").rglob("*.py"):
        for module in _imports(path):
            if module.startswith("logpx") and not module.startswith("logpx.app"):
                assert module in PUBLIC, f"{path.relative_to(ROOT)} imports {module}"


def test_no_test_helpers_in_the_shipped_package() -> None:
    assert not (ROOT / "app" / "local_server.py").exists()
    for path in (ROOT / "app").rglob("*.py"):
        assert not any(m.startswith("tests") for m in _imports(path)), path


def test_nothing_imports_the_folder_names() -> None:
    """``app`` and ``models`` are folders, not packages: importing them would load a second copy of the code."""
    for folder in ("app", "models", "tests", "benchmarks", "checkpoints"):
        for path in (ROOT / folder).rglob("*.py"):
            for module in _imports(path):
                assert module.split(".")[0] not in {"app", "models"}, f"{path.relative_to(ROOT)} imports {module}"
