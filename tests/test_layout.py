"""The layers stay layers: the estimator core imports no model family or I/O, and the app uses only the
public entry points of each ``models`` sub-package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {
    "models.estimators",
    "models.families",
    "models.io",
    "models.runtime",
    "models.samplers",
    "models.training",
    "models.evaluation",
}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out += [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
    return out


def test_estimators_import_no_family_io_or_app() -> None:
    for path in (ROOT / "models" / "estimators").glob("*.py"):
        for module in _imports(path):
            assert not module.startswith(
                ("models.families", "models.io", "models.samplers", "models.training", "app")
            ), f"{path.name} imports {module}"


def test_app_imports_only_public_entry_points() -> None:
    for path in (ROOT / "app").rglob("*.py"):
        for module in _imports(path):
            if module.startswith("models"):
                assert module in PUBLIC, f"{path.relative_to(ROOT)} imports {module}"


def test_no_test_helpers_in_the_shipped_package() -> None:
    assert not (ROOT / "app" / "local_server.py").exists()
    for path in (ROOT / "app").rglob("*.py"):
        assert not any(m.startswith("tests") for m in _imports(path)), path
