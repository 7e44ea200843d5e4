"""The import rule of the house (docs/architecture.md): ``shared`` imports none of the others;
each implementation imports only ``shared`` and its framework; ``testbed`` imports ``shared`` and
the implementations' interface (never their internals); ``lab`` and ``tests`` may import all.

Inside an implementation the tutorial programs (``send``, ``receive``, ``new_task``,
``worker``) sit on top: no module imports them. In ``shared`` the pika error translation does
not import the connection plumbing (the plumbing uses the translation), and the exit-code table
imports nothing of ours. Exit codes are written once, in :mod:`shared.exit_codes`: no literal
code in ``sys.exit``/``os._exit``/``SystemExit`` or an ``exit_code`` attribute elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"shared", "raw_pika", "celery_impl", "dramatiq_impl", "testbed", "lab", "tests"}
IMPLEMENTATIONS = {"raw_pika", "celery_impl", "dramatiq_impl"}

ALLOWED: dict[str, set[str]] = {
    "shared": {"shared"},
    "raw_pika": {"shared", "raw_pika"},
    "celery_impl": {"shared", "celery_impl"},
    "dramatiq_impl": {"shared", "dramatiq_impl"},
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


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules of ours that ``path`` imports (``from x import y`` counts
    ``x`` and ``x.y``: ``y`` may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in OURS}


PROGRAMS = ("send", "receive", "new_task", "worker")
"""Each implementation's tutorial programs: the top of its house, imported by none of it."""


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


@pytest.mark.parametrize("package", sorted(IMPLEMENTATIONS))
def test_no_module_of_an_implementation_imports_its_programs(package: str) -> None:
    programs = {f"{package}.{name}" for name in PROGRAMS}
    found = [
        f"{path.relative_to(ROOT)}: imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_modules(path) & programs)
    ]
    assert found == []


def test_the_pika_error_translation_does_not_import_the_plumbing() -> None:
    assert "shared.pika_connection" not in imported_modules(ROOT / "shared" / "pika_errors.py")
    assert imported_modules(ROOT / "shared" / "exit_codes.py") == set()


def literal_exit_codes(path: Path) -> list[str]:
    """``file:line`` for each exit code written as a number: ``sys.exit(2)``, ``os._exit(3)``,
    ``SystemExit(1)``, ``exit_code = 5`` (``sys.exit(code or 0)`` is no literal code)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        value: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            name = ast.unparse(node.func)
            if name in ("sys.exit", "os._exit", "SystemExit", "exit"):
                value = node.args[0]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(ast.unparse(t).endswith("exit_code") for t in targets):
                value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, int):
            out.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    return out


def test_exit_codes_are_written_once() -> None:
    found = [
        where
        for package in OURS - {"tests"}
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "exit_codes.py"
        for where in literal_exit_codes(path)
    ]
    assert found == []


def test_the_exit_code_rule_catches_a_literal(tmp_path: Path) -> None:
    """Negative control: literal codes are found, a named one and ``code or 0`` are not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sys\nclass E(Exception):\n    exit_code = 2\nsys.exit(1)\nraise SystemExit(3)\n"
        "sys.exit(ExitCode.USAGE)\nsys.exit(code or 0)\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert literal_exit_codes(bad) == ["bad.py:3", "bad.py:4", "bad.py:5"]
    finally:
        ROOT = saved
