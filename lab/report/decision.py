"""The decision table that opens report.md: for each need, which approach and the figure.

Each scenario declares the needs its figures answer (:attr:`lab.scenario.Scenario.needs`);
the table lists them in run order, whether the scenario ran or not. The row with the best
median wins (baseline and defaults rows excluded: the table recommends settings a reader can
keep). A need whose scenario did not run says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """

    need: str
    metric: str
    lowest: bool
    unit: str
    settings: str
    then: str | None = None
    then_unit: str = ""
    words: Callable[[dict[str, Any]], dict[str, Any]] = field(default=no_words)


def rows(view: View) -> list[list[str]]:
    """The decision table's rows: every need of every scenario of a default run (one that did
    not run says so), then those of the on-demand scenarios that ran, in run order."""
    from lab.scenarios import ALL, find  # the scenarios import Need from here

    names = [*ALL, *(n for n in view.results.scenarios if n not in ALL)]
    return [_row(view, name, need) for name in names for need in find(name).needs]


def _row(view: View, scenario: str, need: Need) -> list[str]:
    ran = scenario in view.results.scenarios  # else its parameters are not in the settings
    words = need.words(params(view.config, scenario)) if ran else {}
    found = [
        (v, row)
        for row in (view.rows(scenario) if ran else [])
        if row.target != BASELINE and not row.target.endswith(f"-{DEFAULTS}")
        if (v := view.median(scenario, row, need.metric.format(**words))) is not None
    ]
    if not found:
        why = "not measured in this run" + (
            f" ({view.skipped(scenario)[0]})" if view.skipped(scenario) else ""
        )
        return [need.need, "-", why, "-"]
    best_v = (min if need.lowest else max)(v for v, _r in found)
    # ties (100% completed by several) list every row that reaches the best figure
    winners: list[Row] = [r for v, r in found if abs(v - best_v) <= 1e-9 * max(1, best_v)]
    figure = need.unit.format(best_v, **words)
    if need.then is not None:
        ties = [(t, r) for r in winners if (t := view.median(scenario, r, need.then))]
        if ties:
            best_t = min(t for t, _r in ties)
            winners = [r for t, r in ties if t == best_t]
            figure += need.then_unit.format(best_t)
    approach = ", ".join(view.label(r) for r in winners)
    return [need.need, approach, f"{figure} ({scenario})", need.settings.format(**words)]
