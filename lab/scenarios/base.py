"""What a scenario module declares about itself, and the context its consistency checks get.

Each scenario module defines one ``SCENARIO = Scenario(...)``: how it runs, its report columns,
its one-line reading, its charts, and the checks the end-to-end test applies to its figures
(against the journals or the raw samples in results.json). Adding a scenario is one new module
plus one line in :data:`lab.scenarios.ALL`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.journal import Execution, read

if TYPE_CHECKING:
    from lab.harness import Lab, Outcome, Target
    from lab.view import Column, Row, View


TIMESTAMP_RESOLUTION_S = 0.001
"""Dramatiq's ``message_timestamp`` (a message's ``published_at``) is whole milliseconds, so a
message published in the first millisecond after a mark (``time.time()``) can carry a publish
time just before it."""


def published_between(rows: list[Execution], since: float, until: float) -> list[Execution]:
    """Finished executions of the messages published in ``[since, until)`` (epoch seconds),
    both bounds moved back by :data:`TIMESTAMP_RESOLUTION_S`."""
    low, high = since - TIMESTAMP_RESOLUTION_S, until - TIMESTAMP_RESOLUTION_S
    return [e for e in rows if e.finished_at is not None and low <= e.published_at < high]


@dataclass
class Checker:
    """What a scenario's ``check`` gets: the output directory, results.json and report.md.

    Attributes:
        out: the report directory (journals kept under ``journals/``).
        results: results.json, as loaded.
        report: report.md's text.
        problems: every disagreement found so far.
    """

    out: Path
    results: dict[str, Any]
    report: str
    problems: list[str] = field(default_factory=list)

    def rows(self, samples: dict[str, Any]) -> list[Execution]:
        """The journal a run's ``samples["journal"]`` names."""
        return read(self.out / "journals" / Path(samples["journal"]).name)

    def close(self, reported: float | None, recomputed: float, what: str) -> None:
        """Record a problem unless ``reported`` equals ``recomputed`` (to 1e-6)."""
        if reported is None or not math.isclose(reported, recomputed, rel_tol=1e-6, abs_tol=1e-6):
            self.problems.append(f"{what}: reported {reported}, recomputed {recomputed}")

    def shown(self, text: str, where: str) -> None:
        """Record a problem unless report.md shows ``text``."""
        if text not in self.report:
            self.problems.append(f"{where}: report.md lacks {text!r}")

    def run(self, scenario: str, impl: str, repeat: int, setup: str) -> dict[str, Any] | None:
        """Another run of results.json (say, the baseline of the same repeat)."""
        return next(
            (
                r
                for r in self.results["runs"]
                if r["scenario"] == scenario
                and r["impl"] == impl
                and r["repeat"] == repeat
                and r["setup"] == setup
            ),
            None,
        )


def no_check(checker: Checker, run: dict[str, Any]) -> None:
    """For a scenario whose figures are all checked elsewhere."""


def no_cell(view: View, row: Row, metric: str) -> str | None:
    """For a scenario whose cells are the plain :func:`lab.view.cell` of each metric."""
    return None


def no_charts(view: View, out_dir: Path) -> list[Path]:
    """For a scenario without a chart of its own."""
    return []


@dataclass(frozen=True)
class Scenario:
    """One scenario of the lab.

    Attributes:
        name: the ``--scenario`` name.
        title: the report section's title.
        description: what it does, one paragraph.
        run: ``run(lab, target) -> Outcome``; raises ScenarioFailed / ScenarioSkipped.
        columns: ``columns(config) -> [Column]`` of its table.
        reading: ``reading(view) -> [sentence]`` for "What the numbers say".
        cell: ``cell(view, row, metric)``: a cell's text where the plain one will not do.
        charts: ``charts(view, out_dir) -> [png path]``.
        check: ``check(checker, run)`` appends to ``checker.problems`` for one run's figures.
        baseline: also run the bare pika loop (row ``baseline``).
        variants: extra targets beside the implementations (``defaults``, ``threads``).
        quick_variants: whether ``--quick`` measures the variants too (off where each run
            is long, to keep ``--quick`` near two minutes).
        topologies: the topologies it runs on (``single``, ``cluster``).
        seconds: rough seconds per run (quick, full), for the up-front estimate.
    """

    name: str
    title: str
    description: str
    run: Callable[[Lab, Target], Outcome]
    columns: Callable[[dict[str, Any]], list[Column]]
    reading: Callable[[View], list[str]]
    cell: Callable[[View, Row, str], str | None] = no_cell
    charts: Callable[[View, Path], list[Path]] = no_charts
    check: Callable[[Checker, dict[str, Any]], None] = no_check
    baseline: bool = False
    variants: tuple[str, ...] = ()
    quick_variants: bool = True
    topologies: tuple[str, ...] = ("single", "cluster")
    seconds: tuple[float, float] = (5.0, 10.0)
