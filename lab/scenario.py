"""What a scenario declares about itself, and what one run of it returns or raises.

This is the contract between the lab's three parts: the run machinery (:mod:`lab.run`) calls a
scenario's ``run`` (and ``baseline``), the report (:mod:`lab.report`) asks it for columns,
reading, charts, decision-table needs and checks, and the commands (:mod:`lab.cli`) list its
parameters. Each scenario module defines one ``SCENARIO = Scenario(...)`` and is registered by
name in :mod:`lab.scenarios`; nothing else in the lab names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.journal import Execution

if TYPE_CHECKING:
    from lab.report.checks import Checker
    from lab.report.decision import Need
    from lab.report.view import Column, Row, View
    from lab.run.harness import Lab
    from lab.run.targets import Target


class ScenarioFailed(Exception):
    """A scenario could not produce its figures for one row; ``str()`` says why.

    The runner records it as that run's result and goes on with the next run.
    """


class ScenarioSkipped(Exception):
    """A scenario cannot run on this lab at all (say, it must kill a broker the lab does not
    own); ``str()`` says why. The runner records the run as skipped, not failed."""


@dataclass
class Outcome:
    """What one scenario run for one row measured.

    Attributes:
        metrics: named figures (units in the name: ``_per_s``, ``_ms``, ``_s``, ``_mb``,
            ``_pct``); ``None`` where the figure does not exist (a worker that never resumed).
        samples: the raw samples the metrics were computed from (written to results.json).
        notes: short remarks for the report (a worker that did not resume, and why).
    """

    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


ParamValue = int | float | tuple[int, ...]


@dataclass(frozen=True)
class Param:
    """One parameter of a scenario, set on the command line as ``--set <scenario>.<name>=V``.

    Attributes:
        name: the key in the scenario's parameters (``n``, ``levels``).
        full: the value of a full run.
        quick: the value under ``--quick``.
        help: what it is, with its unit.
    """

    name: str
    full: ParamValue
    quick: ParamValue
    help: str

    def parse(self, text: str) -> ParamValue:
        """``text`` as a value of this parameter's type (comma-separated for a tuple).

        Raises:
            ValueError: not a number of the right type, or not finite and above 0.
        """
        if isinstance(self.full, tuple):
            levels = tuple(int(v) for v in text.split(",") if v.strip())
            if not levels or min(levels) <= 0:
                raise ValueError(f"{text!r} must be numbers above 0, comma-separated")
            return levels
        value = type(self.full)(text)
        if not 0 < value < math.inf:  # also refuses nan
            raise ValueError(f"{text!r} must be a finite number above 0")
        return value


TIMESTAMP_RESOLUTION_S = 0.001
"""Dramatiq's ``message_timestamp`` (a message's ``published_at``) is whole milliseconds, so a
message published in the first millisecond after a mark (``time.time()``) can carry a publish
time just before it."""


def published_between(rows: list[Execution], since: float, until: float) -> list[Execution]:
    """Finished executions of the messages published in ``[since, until)`` (epoch seconds),
    both bounds moved back by :data:`TIMESTAMP_RESOLUTION_S`."""
    low, high = since - TIMESTAMP_RESOLUTION_S, until - TIMESTAMP_RESOLUTION_S
    return [e for e in rows if e.finished_at is not None and low <= e.published_at < high]


def params(config: dict[str, Any], scenario: str) -> dict[str, Any]:
    """The parameters of ``scenario`` in a run's settings (results.json's ``config``)."""
    found: dict[str, Any] = config.get("params", {}).get(scenario, {})
    return found


def no_check(checker: Checker, run: dict[str, Any]) -> None:
    """For a scenario whose figures are all checked elsewhere."""


def no_cell(view: View, row: Row, metric: str) -> str | None:
    """For a scenario whose cells are the plain :func:`lab.report.view.cell` of each metric."""
    return None


def no_charts(view: View, out_dir: Path) -> list[Path]:
    """For a scenario without a chart of its own."""
    return []


def no_settings(config: dict[str, Any]) -> str:
    """For a scenario without a settings line in the report."""
    return ""


@dataclass(frozen=True)
class Scenario:
    """One scenario of the lab: everything the lab knows about it.

    Attributes:
        name: the ``--scenario`` name, and the prefix of its ``--set`` parameters.
        title: the report section's title.
        description: what it does, one paragraph.
        run: ``run(lab, target) -> Outcome``; raises ScenarioFailed / ScenarioSkipped.
        columns: ``columns(config) -> [Column]`` of its table (``config``: results.json's).
        reading: ``reading(view) -> [sentence]`` for "What the numbers say".
        params: its parameters, with their full and ``--quick`` values
            (``lab.params(name)`` in ``run``, :func:`params` over results.json's config).
        settings: ``settings(config) -> str``: its line under "Settings" in report.md.
        needs: the decision-table lines its figures answer.
        cell: ``cell(view, row, metric)``: a cell's text where the plain one will not do.
        charts: ``charts(view, out_dir) -> [png path]``.
        check: ``check(checker, run)`` appends to ``checker.problems`` for one run's figures.
        baseline: ``baseline(lab) -> Outcome``: the same measurement without any
            implementation (row ``baseline``, run before the implementations), or ``None``.
        variants: extra targets beside the implementations (``defaults``, ``threads``).
        quick_variants: whether ``--quick`` measures the variants too (off where each run
            is long, to keep ``--quick`` near two minutes).
        topologies: the topologies it runs on (``single``, ``cluster``).
        cluster_kind: the provider of its ``cluster`` topology (:mod:`testbed.provider`):
            ``netns`` for a cluster whose links can be cut (partitions).
        seconds: rough seconds per run (quick, full), for the up-front estimate.
        sampled: metric -> (samples key, percentile) for a figure that is a percentile of
            many samples (``{"start_p50_ms": ("start_ms", 50)}``): from one repeat its 95%
            interval is bootstrapped over those samples (:mod:`lab.report.stats`).
        provides: the kinds of figures it measures that another scenario may set beside its
            own (:data:`lab.report.view.IDLE_LATENCY`); one scenario per kind.
        compares_with: the kinds of figures of another scenario it sets beside its own: the
            report finds the scenario that ``provides`` each one
            (:func:`lab.report.view.provider`), so no scenario names another.
    """

    name: str
    title: str
    description: str
    run: Callable[[Lab, Target], Outcome]
    columns: Callable[[dict[str, Any]], list[Column]]
    reading: Callable[[View], list[str]]
    params: tuple[Param, ...] = ()
    settings: Callable[[dict[str, Any]], str] = no_settings
    needs: tuple[Need, ...] = ()
    cell: Callable[[View, Row, str], str | None] = no_cell
    charts: Callable[[View, Path], list[Path]] = no_charts
    check: Callable[[Checker, dict[str, Any]], None] = no_check
    baseline: Callable[[Lab], Outcome] | None = None
    variants: tuple[str, ...] = ()
    quick_variants: bool = True
    topologies: tuple[str, ...] = ("single", "cluster")
    cluster_kind: str = "cluster"
    seconds: tuple[float, float] = (5.0, 10.0)
    sampled: dict[str, tuple[str, float]] = field(default_factory=dict)
    provides: tuple[str, ...] = ()
    compares_with: tuple[str, ...] = ()

    def param(self, name: str) -> Param:
        """Its parameter ``name``.

        Raises:
            KeyError: it has no such parameter.
        """
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no parameter {name!r}")

    def defaults(self, quick: bool) -> dict[str, ParamValue]:
        """Its parameters' values of a full run, or of ``--quick``."""
        return {p.name: p.quick if quick else p.full for p in self.params}
