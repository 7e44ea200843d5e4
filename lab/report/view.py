"""Reading :class:`lab.run.runner.Results` back: summaries over repeats, table columns and cells.

Every figure the report, the charts and the decision table show is the median over the repeats
of a run, with its 95% bootstrap interval in brackets when there was more than one
(:mod:`lab.report.stats`), computed here from the raw metrics.
Scenario modules build their columns, readings and charts from these helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lab.report.stats import Summary, percentile_interval, summarize

if TYPE_CHECKING:
    from lab.run.runner import Results, RunRecord

Format = Callable[[float], str]

BASELINE = "baseline"
"""The row id under which the bare pika loop's runs are recorded."""
DEFAULTS = "defaults"
"""The suffix of a framework-defaults row (``celery-defaults``): see :mod:`lab.run.targets`."""
IDLE_LATENCY = "idle latency"
"""A kind of figures (:attr:`lab.scenario.Scenario.provides`): publish->start percentiles of
one message at a time on an idle worker (``start_p50_ms``, ``start_p95_ms``, ``start_p99_ms``
and the samples ``start_ms``)."""


def provider(kind: str) -> str:
    """The name of the scenario that provides ``kind`` of figures
    (:attr:`lab.scenario.Scenario.provides`), for one that ``compares_with`` them.

    Raises:
        KeyError: no scenario, or more than one, provides it.
    """
    from lab.scenarios import KNOWN  # the scenarios import this module

    found = [name for name, s in KNOWN.items() if kind in s.provides]
    if len(found) != 1:
        raise KeyError(f"{len(found)} scenarios provide {kind!r} figures, not one: {found}")
    return found[0]


def rate(v: float) -> str:
    """``12,345/s``."""
    return f"{v:,.0f}/s"


def ms(v: float) -> str:
    """``12.3`` (the header says ms)."""
    return f"{v:.1f}"


def secs(v: float) -> str:
    """``1.23 s``."""
    return f"{v:.2f} s"


def pct(v: float) -> str:
    """``12.3%``."""
    return f"{v:.1f}%"


def count(v: float) -> str:
    """``12``."""
    return f"{v:.0f}"


def mb(v: float) -> str:
    """``12.3 MB``."""
    return f"{v:.1f} MB"


def us(v: float) -> str:
    """``1,234`` microseconds (the header says us)."""
    return f"{v:,.0f}"


def ratio(v: float) -> str:
    """``1.23x``."""
    return f"{v:.2f}x"


@dataclass(frozen=True)
class Column:
    """One column of a scenario table: a metric key, its header and how to format it.

    Attributes:
        metric: the metric key in each run's ``metrics``.
        header: the column header.
        fmt: how a value prints.
        kind: take the metric from the scenario that provides this kind of figures
            (:func:`provider`) instead of the table's own.
    """

    metric: str
    header: str
    fmt: Format
    kind: str | None = None


def cell(s: Summary | None, fmt: Format) -> str:
    """``median [low-high]`` (the 95% interval of the median), or ``median`` alone from one
    repeat; ``-`` when there is no value.

    The interval is shown only when its ends differ as printed (a constant, such as the ideal
    fast share or 0 lost, is printed alone); the ``runs`` column says how many repeats.
    """
    if s is None:
        return "-"
    if s.ci is None:
        return fmt(s.median)
    low, high = fmt(s.ci[0]), fmt(s.ci[1])
    if low != high:
        return f"{fmt(s.median)} [{low}-{high}]"
    return fmt(s.median)


def run_status(runs: int, failed: int, skipped: int) -> str:
    """The ``runs`` column: ``n=5`` (the repeats behind each figure), ``n=1 (no interval)``,
    ``skipped``, or how many of the runs failed / were skipped."""
    if runs and skipped == runs:
        return "skipped"
    good = runs - failed - skipped
    parts = [f"n={good}" + (" (no interval)" if good == 1 else "")]
    parts += [f"{failed}/{runs} failed"] if failed else []
    parts += [f"{skipped}/{runs} skipped"] if skipped else []
    return ", ".join(parts)


@dataclass(frozen=True)
class Row:
    """One row of a table: a target (implementation, variant or baseline) on one setup.

    Attributes:
        target: ``pika``, ``celery-defaults``, ``baseline``...
        setup: ``classic/single``, ``quorum/cluster``...
    """

    target: str
    setup: str

    def impl(self) -> str:
        """The implementation behind the target (``celery`` for ``celery-threads``)."""
        return self.target.split("-", 1)[0]


def sampled(
    scenario: str, metric: str, runs: list[RunRecord], found: Summary | None
) -> Summary | None:
    """``found`` (one repeat, no interval) with the interval of a percentile figure over that
    run's samples, when the scenario declares ``metric`` one (else ``found`` as it is)."""
    from lab.scenarios import find  # the scenarios import this module

    if found is None or found.n != 1 or metric not in find(scenario).sampled:
        return found
    key, pct = find(scenario).sampled[metric]
    values = next((r.samples.get(key) for r in runs if r.metrics.get(metric) is not None), None)
    ci = percentile_interval(values or [], pct)
    return found if ci is None else replace(found, ci=ci)


class View:
    """Summaries of one run's results.

    Parameters:
        results: what ``mqlab compare`` measured.
    """

    def __init__(self, results: Results) -> None:
        self.results = results
        self.config = results.config
        self.impls = results.implementations
        self.setups = results.setups

    def label(self, row: Row) -> str:
        """``pika`` on one setup; ``pika (quorum/cluster)`` when the run had several."""
        return row.target if len(self.setups) <= 1 else f"{row.target} ({row.setup})"

    def runs(self, scenario: str, row: Row) -> list[RunRecord]:
        """The runs of ``scenario`` for ``row``, in repeat order."""
        return [
            r
            for r in self.results.runs
            if r.scenario == scenario and r.impl == row.target and r.setup == row.setup
        ]

    def rows(self, scenario: str) -> list[Row]:
        """Every row that has runs of ``scenario``, in run order, a target's setups next to
        each other (``pika (classic/single)``, ``pika (quorum/single)``, ``celery ...``)."""
        seen: list[Row] = []
        for r in self.results.runs:
            row = Row(r.impl, r.setup)
            if r.scenario == scenario and row not in seen:
                seen.append(row)
        order = list(dict.fromkeys(row.target for row in seen))
        return sorted(seen, key=lambda x: (order.index(x.target), self.setups.index(x.setup)))

    def summary(self, scenario: str, row: Row, metric: str) -> Summary | None:
        """Median/min/max of ``metric`` over the successful runs that have it, with its 95%
        interval over the repeats, or from one repeat over its samples where the scenario
        declares the metric a percentile of many (:attr:`lab.scenario.Scenario.sampled`)."""
        runs = [r for r in self.runs(scenario, row) if r.error is None]
        found = summarize([v for r in runs if (v := r.metrics.get(metric)) is not None])
        return sampled(scenario, metric, runs, found)

    def median(self, scenario: str, row: Row, metric: str) -> float | None:
        """The median of ``metric``, or ``None``."""
        s = self.summary(scenario, row, metric)
        return None if s is None else s.median

    def pair_ratio(
        self, scenario: str, row: Row, other: Row, metric: str, other_metric: str | None = None
    ) -> Summary | None:
        """``row``'s metric over ``other``'s, pairing runs of the same repeat, summarised."""
        base = {r.repeat: r.metrics.get(other_metric or metric) for r in self.runs(scenario, other)}
        ratios = []
        for r in self.runs(scenario, row):
            b, v = base.get(r.repeat), r.metrics.get(metric)
            if r.error is None and b and v is not None:
                ratios.append(v / b)
        return summarize(ratios)

    def status(self, scenario: str, row: Row) -> str:
        """The ``runs`` column of ``row``."""
        runs = self.runs(scenario, row)
        failed = sum(1 for r in runs if r.error is not None)
        skipped = sum(1 for r in runs if r.skipped is not None)
        return run_status(len(runs), failed, skipped)

    def skipped(self, scenario: str) -> list[str]:
        """Why runs of ``scenario`` were skipped (deduplicated)."""
        out: list[str] = []
        for r in self.results.runs:
            if r.scenario == scenario and r.skipped and r.skipped not in out:
                out.append(r.skipped)
        return out

    def figures(self) -> list[dict[str, Any]]:
        """Every figure of the run: ``{"scenario", "row", "setup", "metric", "median", "ci",
        "n"}`` for each metric of each row of each scenario (results.json's ``figures``)."""
        out = []
        for scenario in self.results.scenarios:
            for row in self.rows(scenario):
                metrics = dict.fromkeys(k for r in self.runs(scenario, row) for k in r.metrics)
                for metric in metrics:
                    s = self.summary(scenario, row, metric)
                    if s is not None:
                        out.append(
                            {"scenario": scenario, "row": row.target, "setup": row.setup,
                             "metric": metric, "median": s.median,
                             "ci": list(s.ci) if s.ci else None, "n": s.n}
                        )  # fmt: skip
        return out

    def imprecise(self, scenario: str, metrics: list[str], within: float) -> list[str]:
        """``row metric`` for each figure of ``metrics`` whose 95% interval reaches further
        than ``within`` (a share) from its median, or that has no interval (one repeat)."""
        out = []
        for row in self.rows(scenario):
            for metric in metrics:
                s = self.summary(scenario, row, metric)
                if s is not None and (
                    s.ci is None or max(s.median - s.ci[0], s.ci[1] - s.median) > within * s.median
                ):
                    out.append(f"{self.label(row)} {metric}")
        return out

    def best(
        self, scenario: str, metric: str, *, lowest: bool = False, setup: str | None = None
    ) -> tuple[Row, float] | None:
        """The row with the highest (or lowest) median of ``metric``, baseline excluded."""
        found = [
            (v, row)
            for row in self.rows(scenario)
            if row.target != BASELINE and (setup is None or row.setup == setup)
            if (v := self.median(scenario, row, metric)) is not None
        ]
        if not found:
            return None
        v, row = (min if lowest else max)(found, key=lambda x: x[0])
        return row, v
