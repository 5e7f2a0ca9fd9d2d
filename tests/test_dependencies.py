"""Every runtime dependency in pyproject.toml is imported by the package: an unused one is only
install time and attack surface for every user."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")


def _runtime_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]}


def _imported_modules() -> set[str]:
    names = set()
    for source in (ROOT / "animesr").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    providers = importlib.metadata.packages_distributions()
    imported = {dist.lower() for module in _imported_modules() for dist in providers.get(module, [])}
    unused = _runtime_distributions() - imported
    assert not unused, f"declared in pyproject.toml but never imported by animesr: {sorted(unused)}"
