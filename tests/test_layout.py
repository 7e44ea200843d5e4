"""The import rule of the house (docs/architecture.md): ``shared`` imports none of the others;
each implementation imports only ``shared`` and its framework; ``testbed`` imports ``shared`` and
the implementations' interface (never their internals); ``lab`` and ``tests`` may import all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "shared", "raw_pika", "celery_impl", "dramatiq_impl", "faststream_impl", "testbed", "lab",
    "tests",
}  # fmt: skip
IMPLEMENTATIONS = {"raw_pika", "celery_impl", "dramatiq_impl", "faststream_impl"}

ALLOWED: dict[str, set[str]] = {
    "shared": {"shared"},
    "raw_pika": {"shared", "raw_pika"},
    "celery_impl": {"shared", "celery_impl"},
    "dramatiq_impl": {"shared", "dramatiq_impl"},
    "faststream_impl": {"shared", "faststream_impl"},
    "testbed": {"shared", "testbed"},
}
"""Package -> the packages of ours it may import (``testbed`` reaches the implementations only
through :mod:`testbed.registry`, by name at run time)."""


def imported_packages(path: Path) -> set[str]:
    """Top-level packages of ours that ``path`` imports (``import x`` and ``from x import y``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def violations(package: str) -> list[str]:
    """``file: imports X`` for every import in ``package`` that the rule forbids."""
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in sorted(imported_packages(path) - ALLOWED[package]):
            out.append(f"{path.relative_to(ROOT)}: imports {imported}")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_rule_allows(package: str) -> None:
    assert violations(package) == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """Negative control: a file importing the test bed from ``shared`` is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from testbed.process import wait_until\nimport lab.cli\nimport os\n")
    assert imported_packages(bad) == {"testbed", "lab"}


def test_no_module_is_over_about_350_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for package in OURS - {"tests"}
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
