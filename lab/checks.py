"""The consistency checks of a finished run: each scenario's own, over every run of results.json.

``mqlab compare --keep-journals`` leaves results.json, report.md and the journals side by side;
:func:`check` recomputes every figure from the journals or the raw samples it came from
(:attr:`lab.scenarios.base.Scenario.check`) and returns every disagreement. The end-to-end test
asserts there is none, and that a tampered results.json is caught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.scenarios import ALL
from lab.scenarios.base import Checker


def check(out: Path, results: dict[str, Any]) -> list[str]:
    """Every disagreement between ``results``, the journals under ``out`` and report.md."""
    checker = Checker(out, results, (out / "report.md").read_text())
    for run in results["runs"]:
        if run["error"] or run["skipped"]:
            continue
        try:
            ALL[run["scenario"]].check(checker, run)
        except (KeyError, ValueError, TypeError) as e:
            checker.problems.append(f"{run['scenario']}/{run['impl']}: cannot check ({e!r})")
    return checker.problems
