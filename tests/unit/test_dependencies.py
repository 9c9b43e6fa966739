"""A declared dependency is a used one, and the two locks agree (README "Dependencies")."""

from __future__ import annotations

import ast
import functools
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Test-extra packages used as tools or plugins rather than imported, and why.
NOT_IMPORTED = {
    "pytest-asyncio": "pytest plugin, enabled by asyncio_mode = auto",
    "ruff": "the linter CI runs",
    "mypy": "the type checker CI runs",
}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]).lower()


@functools.cache
def _imported(*folders: str) -> frozenset[str]:
    """Top-level module names imported anywhere under ``folders``."""
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return frozenset(found)


@functools.cache
def _distributions_of(modules: frozenset[str]) -> set[str]:
    mapping = packages_distributions()
    return {_name(dist) for module in modules for dist in mapping.get(module, ())}


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text(encoding="utf-8")
    return {_name(m.group(1)): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.MULTILINE)}


@pytest.mark.parametrize("requirement", PYPROJECT["project"]["dependencies"])
def test_every_runtime_dependency_is_imported_by_rca(requirement: str) -> None:
    assert _name(requirement) in _distributions_of(_imported("analyzer", "probes", "reports")), (
        f"{requirement} is declared but nothing in analyzer/, probes/ or reports/ imports it"
    )


@pytest.mark.parametrize("requirement", PYPROJECT["project"]["optional-dependencies"]["test"])
def test_every_test_dependency_is_used(requirement: str) -> None:
    name = _name(requirement)
    if name in NOT_IMPORTED:
        return
    assert name in _distributions_of(_imported("tests", "bench")), (
        f"{requirement} is a test dependency that no test imports"
    )


def test_every_declared_dependency_is_locked_and_both_locks_agree() -> None:
    dev, runtime = _pins("dev.lock"), _pins("runtime.lock")
    declared = [*PYPROJECT["project"]["dependencies"],
                *PYPROJECT["project"]["optional-dependencies"]["test"]]
    assert not {_name(r) for r in declared} - set(dev), "pyproject.toml changed: scripts/lock.sh"
    assert {n: v for n, v in dev.items() if n in runtime} == runtime
