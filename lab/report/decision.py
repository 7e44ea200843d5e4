"""The decision table that opens report.md: for each need, which approach and the figure.

Each scenario declares the needs its figures answer (:attr:`lab.scenario.Scenario.needs`);
the table lists them in run order, whether the scenario ran or not. Baseline and defaults rows
are excluded: the table recommends settings a reader can keep. A need whose scenario did not run
says so instead of guessing.

A need names one winner only where the data separates it: the row with the best median wins
when its 95% interval (:mod:`lab.report.stats`) clears the runner-up's. Otherwise every row
whose interval overlaps the best one's is listed, ``tie: A, B (within noise)``, with the figure
that could not separate them (a tie-breaker metric, ``then``, may still separate them by the
same rule). A run with one repeat has no intervals: its single best is named, marked
provisional. A need may name a ``backing`` figure (CPU per task beside a rate) shown for every
row it names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.report.stats import Summary
from lab.report.view import BASELINE, DEFAULTS, Row, View
from lab.scenario import params

HEADERS = ["need", "approach", "the figure that says so", "settings it needs"]


def no_words(params: dict[str, Any]) -> dict[str, Any]:
    """For a need whose metric and unit have no placeholders."""
    return {}


@dataclass(frozen=True)
class Need:
    """One line of the decision table, declared by the scenario whose figure answers it.

    Attributes:
        need: the need in words.
        metric: which figure; ``{name}`` placeholders are filled by ``words``.
        lowest: whether lower is better.
        unit: how the figure prints (a format string over the value, same placeholders).
        settings: what the winning approach needs, in words.
        then: a tie-breaker metric, lower is better (a row without it loses the tie).
        then_unit: how the tie-breaker prints.
        words: ``words(params) -> {placeholder: value}`` from the scenario's parameters
            (``{"top": levels[-1]}``).
        backing: a second figure printed beside each named row's (``cpu_p{top}_us``), or
            ``None``.
        backing_unit: how the backing figure prints.
    """

    need: str
    metric: str
    lowest: bool
    unit: str
    settings: str
    then: str | None = None
    then_unit: str = ""
    words: Callable[[dict[str, Any]], dict[str, Any]] = field(default=no_words)
    backing: str | None = None
    backing_unit: str = ""


def rows(view: View) -> list[list[str]]:
    """The decision table's rows: every need of every scenario of a default run (one that did
    not run says so), then those of the on-demand scenarios that ran, in run order."""
    from lab.scenarios import ALL, find  # the scenarios import Need from here

    names = [*ALL, *(n for n in view.results.scenarios if n not in ALL)]
    return [_row(view, name, need) for name in names for need in find(name).needs]


def separate(
    found: list[tuple[Summary, Row]], lowest: bool
) -> tuple[list[tuple[Summary, Row]], bool]:
    """The rows a need names from ``found`` (each row's summary of the figure), and whether
    that is a separated winner: the best median alone when its interval clears every other
    row's, else every row whose interval overlaps the best one's (exact ties included)."""
    ranked = sorted(found, key=lambda x: x[0].median, reverse=not lowest)
    best = ranked[0][0]
    if len(ranked) == 1:
        return ranked, True
    if best.ci is None:  # one repeat: no interval; the exact ties still share the place
        same = [x for x in ranked if math.isclose(x[0].median, best.median, rel_tol=1e-9)]
        return same, len(same) == 1
    named = [ranked[0]] + [x for x in ranked[1:] if not best.clears(x[0], lowest)]
    return named, len(named) == 1


def _row(view: View, scenario: str, need: Need) -> list[str]:
    ran = scenario in view.results.scenarios  # else its parameters are not in the settings
    words = need.words(params(view.config, scenario)) if ran else {}
    metric = need.metric.format(**words) if ran else need.metric
    found = [
        (s, row)
        for row in (view.rows(scenario) if ran else [])
        if row.target != BASELINE and not row.target.endswith(f"-{DEFAULTS}")
        if (s := view.summary(scenario, row, metric)) is not None
    ]
    if not found:
        why = "not measured in this run" + (
            f" ({view.skipped(scenario)[0]})" if view.skipped(scenario) else ""
        )
        return [need.need, "-", why, "-"]
    named, alone = separate(found, need.lowest)
    figure = _figure(need.unit.format(named[0][0].median, **words), named[0][0])
    if not alone:
        others = [
            f"{view.label(r)} {_figure(need.unit.format(s.median, **words), s)}"
            for s, r in named[1:]
        ]
        if others and any(not o.endswith(f" {figure}") for o in others):
            figure += " vs " + ", ".join(others)
        if need.then is not None:
            ties = [(t, r) for _s, r in named if (t := view.summary(scenario, r, need.then))]
            if ties:
                named_then, alone = separate(ties, True)
                named = [(s, r) for s, r in named if r in {x[1] for x in named_then}]
                figure += need.then_unit.format(named_then[0][0].median)
    if need.backing is not None:
        backing = need.backing.format(**words)
        backed = [
            f"{view.label(r)} {_figure(need.backing_unit.format(b.median), b)}"
            for _s, r in named
            if (b := view.summary(scenario, r, backing)) is not None
        ]
        if backed:
            figure += "; " + ", ".join(backed)
    names = ", ".join(view.label(r) for _s, r in named)
    one_repeat = all(s.n == 1 for s, _r in found)
    if alone:
        approach = names + (" (provisional: one repeat)" if one_repeat else "")
    else:
        approach = f"tie: {names} (within noise)" if len(named) > 1 else names
        approach += " (provisional: one repeat)" if one_repeat else ""
    return [need.need, approach, f"{figure} ({scenario})", need.settings.format(**words)]


def _figure(text: str, s: Summary) -> str:
    """``text`` with the figure's 95% interval and repeats: ``6,133 tasks/s [5,900-6,400, n=5]``."""
    if s.ci is None:
        return text
    n = "over one run's samples" if s.n == 1 else f"n={s.n}"
    return f"{text} [{s.ci[0]:,.4g}-{s.ci[1]:,.4g}, {n}]"
