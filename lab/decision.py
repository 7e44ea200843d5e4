"""The decision table that opens report.md: for each need, which approach and the figure.

Each need names a scenario and a metric; the row with the best median wins (baseline and
defaults rows excluded: the table recommends settings a reader can keep). A need whose
scenario did not run says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.view import DEFAULTS, Row, View

HEADERS = ["need", "approach", "the figure that says so", "settings it needs"]


@dataclass(frozen=True)
class Need:
    """One line of the decision table.

    Attributes:
        need: the need in words.
        scenario: where the figure comes from.
        metric: which figure (``{top}``: the highest scaling level).
        lowest: whether lower is better.
        unit: how the figure prints (a format string over the value).
        settings: what the winning approach needs, in words.
        then: a tie-breaker metric, lower is better (a row without it loses the tie).
        then_unit: how the tie-breaker prints.
    """

    need: str
    scenario: str
    metric: str
    lowest: bool
    unit: str
    settings: str
    then: str | None = None
    then_unit: str = ""


NEEDS = (
    Need(
        "least code",
        "footprint",
        "lines_of_code",
        True,
        "{:.0f} lines of code",
        "none beyond the framework's own",
    ),
    Need(
        "most throughput",
        "throughput",
        "consume_p100_per_s",
        False,
        "{:,.0f} tasks/s at prefetch 100",
        "prefetch 100 (fair dispatch given up)",
    ),
    Need(
        "lowest latency",
        "latency",
        "start_p50_ms",
        True,
        "{:.1f} ms publish->start, median, idle",
        "prefetch 1, a worker already consuming",
    ),
    Need(
        "CPU-bound work",
        "scaling",
        "cpu_c{top}_per_s",
        False,
        "{:,.0f} tasks/s at concurrency {top}",
        "one slot per core: processes, not threads",
    ),
    Need(
        "I/O-bound work",
        "scaling",
        "io_c{top}_per_s",
        False,
        "{:,.0f} tasks/s at concurrency {top}",
        "many slots (threads) with prefetch 1 per slot",
    ),
    Need(
        "no loss on worker crash",
        "crash",
        "completed_pct",
        False,
        "{:.1f}% of tasks completed with a worker SIGKILLed mid-task",
        "ack after the work (Celery task_acks_late=True), prefetch 1",
    ),
    Need(
        "survive a node loss",
        "nodeloss",
        "executed_pct",
        False,
        "{:.1f}% of confirmed tasks executed after the queue leader was SIGKILLed",
        "quorum queue on 3 nodes, publisher confirms, every node's URL in the client",
        "consumption_gap_s",
        ", consumption paused {:.1f} s",
    ),
    Need(
        "smallest footprint",
        "footprint",
        "rss_idle_mb",
        True,
        "{:.0f} MB RSS, idle worker",
        "one worker process, concurrency 1",
    ),
)


def rows(view: View) -> list[list[str]]:
    """The decision table's rows."""
    top = view.config["scaling_levels"][-1] if view.config.get("scaling_levels") else 1
    out = []
    for need in NEEDS:
        metric = need.metric.format(top=top)
        found = [
            (v, row)
            for row in view.rows(need.scenario)
            if row.target != "baseline" and not row.target.endswith(f"-{DEFAULTS}")
            if (v := view.median(need.scenario, row, metric)) is not None
        ]
        if not found:
            why = "not measured in this run" + (
                f" ({view.skipped(need.scenario)[0]})" if view.skipped(need.scenario) else ""
            )
            out.append([need.need, "-", why, "-"])
            continue
        best_v = (min if need.lowest else max)(v for v, _r in found)
        # ties (100% completed by several) list every row that reaches the best figure
        winners: list[Row] = [r for v, r in found if abs(v - best_v) <= 1e-9 * max(1, best_v)]
        figure = need.unit.format(best_v, top=top)
        if need.then is not None:
            ties = [(t, r) for r in winners if (t := view.median(need.scenario, r, need.then))]
            if ties:
                best_t = min(t for t, _r in ties)
                winners = [r for t, r in ties if t == best_t]
                figure += need.then_unit.format(best_t)
        approach = ", ".join(view.label(r) for r in winners)
        out.append([need.need, approach, f"{figure} ({need.scenario})", need.settings])
    return out
