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
import re
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


# -- inside lab/: three parts, and scenarios that stand alone ----------------------------------

LAB_PARTS: dict[str, set[str]] = {
    "lab.scenario": {"lab.scenario", "lab.run", "lab.report"},  # for type hints only
    "lab.run": {"lab.scenario", "lab.run", "lab.scenarios", "lab.report"},
    "lab.report": {"lab.scenario", "lab.run", "lab.scenarios", "lab.report"},
    "lab.scenarios": {"lab.scenario", "lab.run", "lab.report"},
}
"""Part of ``lab`` -> the parts it may import. The running (``lab.run``) and the reporting
(``lab.report``) never import the commands (``lab.commands``, ``lab.cli``); a scenario imports
only the contract (``lab.scenario``), the run machinery and the report helpers, never another
scenario (the registry, ``lab/scenarios/__init__.py``, loads them by name)."""


def lab_imports(path: Path) -> set[str]:
    """``lab.<part>`` for every ``lab`` module ``path`` imports (``lab.scenarios.crash`` is
    ``lab.scenarios.crash``: a scenario module names itself in full)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "lab" or len(parts) < 2:
                continue
            found.add(".".join(parts[:3]) if parts[1] == "scenarios" else ".".join(parts[:2]))
    return found


def lab_violations(root: Path = ROOT / "lab") -> list[str]:
    """``file: imports X`` for every import between parts of ``lab`` (the package at ``root``)
    that :data:`LAB_PARTS` forbids, and every import of one scenario module by another."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        part = ".".join(rel.with_suffix("").parts[:2])  # lab.run, lab.scenarios, lab.scenario
        if part not in LAB_PARTS:
            continue
        for imported in sorted(lab_imports(path)):
            head = ".".join(imported.split(".")[:2])
            scenario = imported.startswith("lab.scenarios.") and path.name != "__init__.py"
            if head not in LAB_PARTS[part] or (part == "lab.scenarios" and scenario):
                out.append(f"{rel}: imports {imported}")
    return out


def test_lab_parts_import_only_what_the_rule_allows() -> None:
    assert lab_violations() == []


def test_the_lab_rule_catches_a_scenario_importing_another(tmp_path: Path) -> None:
    """Negative control: a scenario importing another scenario, a scenario importing the
    commands, and the run machinery importing the CLI are all reported."""
    root = tmp_path / "lab"
    (root / "scenarios").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "scenarios" / "a.py").write_text("from lab.scenarios import crash\n")
    (root / "scenarios" / "b.py").write_text("from lab.scenarios.latency import cdf\n")
    (root / "scenarios" / "c.py").write_text("from lab.commands.usage import console\n")
    (root / "run" / "d.py").write_text("import lab.cli\nfrom lab.report import plot\n")
    assert lab_violations(root) == [
        "lab/run/d.py: imports lab.cli",
        "lab/scenarios/a.py: imports lab.scenarios",
        "lab/scenarios/a.py: imports lab.scenarios.crash",
        "lab/scenarios/b.py: imports lab.scenarios.latency",
        "lab/scenarios/c.py: imports lab.commands",
    ]


def mentions(name: str, root: Path) -> list[str]:
    """``file:line`` of every line of the package at ``root`` naming ``name`` as a word (so
    ``crashed`` does not name ``crash``), outside ``name``'s own module."""
    return [
        f"{p.relative_to(root.parent)}:{i}"
        for p in sorted(root.rglob("*.py"))
        if p.stem != name
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(rf"\b{name}\b", line)
    ]


ORDINARY_WORDS = {"crash", "restart", "partition", "loaded", "latency"}
"""Scenario names that are also words of the field's prose (``a broker restart``, ``latency
percentiles``): :func:`mentions` would find the prose, so for these only :func:`named_as_key`
holds the rule."""


def test_a_scenario_is_named_only_by_its_module_and_its_registration() -> None:
    """``grep -rnw <scenario> lab/`` finds only the scenario's module and its registration,
    for every scenario whose name is not an ordinary word too."""
    from lab.scenarios import KNOWN

    assert {"throughput", "latency", "example"} <= set(KNOWN)
    for name in sorted(set(KNOWN) - ORDINARY_WORDS):
        assert mentions(name, ROOT / "lab") == [f"lab/scenarios/__init__.py:{registered(name)}"]


CODE_PACKAGES = ("lab", "shared", "testbed", *sorted(IMPLEMENTATIONS))


def docstring_ids(tree: ast.AST) -> set[int]:
    """``id()`` of every string that stands alone as a statement (docstrings, attribute
    docstrings): prose, not code."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }  # fmt: skip


def named_as_key(names: set[str], root: Path, packages: tuple[str, ...]) -> list[str]:
    """``file:line: 'text'`` for every string in the code (not a docstring) of ``packages``
    under ``root`` that names a scenario of ``names`` as a key: the name itself, or the name
    and ``.``, ``-``, ``/`` or ``:`` (``"latency"``, ``"restart.resume_deadline"``,
    ``f"crash-{x}"``), outside the scenario's own module and its registration
    (``lab/scenarios/__init__.py``)."""
    key = re.compile(rf"^({'|'.join(map(re.escape, sorted(names)))})(?:[./:-]|$)")
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if rel == Path("lab/scenarios/__init__.py"):
                continue
            tree = ast.parse(path.read_text(), str(path))
            prose = docstring_ids(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                found = key.match(node.value)
                if id(node) in prose or not found:
                    continue
                own = rel.parent == Path("lab/scenarios") and path.stem == found.group(1)
                if not own:
                    out.append(f"{rel}:{node.lineno}: {node.value!r}")
    return out


def test_no_code_names_a_scenario_outside_its_module() -> None:
    """No string of the code outside a scenario's module and its registration names it: a
    scenario that sets another's figures beside its own declares the kind of figures
    (:attr:`lab.scenario.Scenario.compares_with`), never the other's name."""
    from lab.scenarios import KNOWN

    assert named_as_key(set(KNOWN), ROOT, CODE_PACKAGES) == []


def test_the_key_rule_catches_a_scenario_named_in_code(tmp_path: Path) -> None:
    """Negative control: a scenario naming another, a report module keying a scenario's
    parameters and an f-string journal name are found; the scenario naming itself, a
    docstring, prose and a marker that merely contain the word are not."""
    scenarios = tmp_path / "lab" / "scenarios"
    scenarios.mkdir(parents=True)
    (tmp_path / "lab" / "report").mkdir()
    (scenarios / "__init__.py").write_text('RUN_ORDER = ("latency", "loaded", "crash")\n')
    (scenarios / "loaded.py").write_text(
        '"""Beside the latency scenario."""\nNAME = "loaded"\nIDLE = "latency"\n'
    )
    (scenarios / "latency.py").write_text('NAME = "latency"\nJ = f"latency-{NAME}"\n')
    (tmp_path / "lab" / "report" / "table.py").write_text(
        'A = cfg["params"]["crash"]\nB = f"crash-{x}"\nC = "[crash]"\nD = "a crash, then"\n'
    )
    assert named_as_key({"latency", "loaded", "crash"}, tmp_path, ("lab",)) == [
        "lab/report/table.py:1: 'crash'",
        "lab/report/table.py:2: 'crash-'",
        "lab/scenarios/loaded.py:3: 'latency'",
    ]


def test_every_kind_of_figures_a_scenario_compares_with_has_one_provider() -> None:
    """Each :attr:`~lab.scenario.Scenario.compares_with` kind is provided by exactly one
    scenario, and the lookup refuses a kind nobody provides (negative control)."""
    from lab.report.view import IDLE_LATENCY, provider
    from lab.scenarios import KNOWN

    wanted = {kind for s in KNOWN.values() for kind in s.compares_with}
    assert IDLE_LATENCY in wanted
    for kind in wanted:
        assert provider(kind) in KNOWN
        assert kind not in KNOWN[provider(kind)].compares_with
    with pytest.raises(KeyError):
        provider("no such kind")


def registered(name: str) -> int:
    """The line of ``lab/scenarios/__init__.py`` that registers ``name``."""
    lines = (ROOT / "lab" / "scenarios" / "__init__.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if f'"{name}"' in line)


def test_the_naming_rule_catches_a_scenario_named_elsewhere(tmp_path: Path) -> None:
    """Negative control: a report module that names a scenario is found."""
    (tmp_path / "lab" / "report").mkdir(parents=True)
    (tmp_path / "lab" / "report" / "table.py").write_text('X = "crashed"\nY = view("crash")\n')
    assert mentions("crash", tmp_path / "lab") == ["lab/report/table.py:2"]


def test_the_documented_scenario_is_the_example_module() -> None:
    """``docs/architecture.md`` shows ``lab/scenarios/example.py`` as it is (the module is run
    end to end by ``tests/test_lab.py``); a changed module fails here until the doc follows."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Adding a scenario to the lab", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.count("\n") > 20
    assert block in (ROOT / "lab" / "scenarios" / "example.py").read_text()


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
