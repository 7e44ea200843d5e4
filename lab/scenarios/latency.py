"""Latency: messages sent one at a time to an idle worker.

One worker (prefetch 1) waits on an empty queue; the lab publishes one zero-work task through
the target's producer, waits until the journal shows it finished, then sends the next.
publish->start is the journal's ``started_at`` minus the message's ``published_at`` (the precise
publish time the contract carries in a header, :mod:`shared.contract`); publish->finish uses
``finished_at``. Both clocks are this machine's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.decision import Need
from lab.report.stats import percentile
from lab.report.view import IDLE_LATENCY, Column, View, ms
from lab.run.harness import Lab, Outcome, ScenarioFailed, Target
from lab.scenario import Param, Scenario, params
from shared.journal import Execution, Journal
from testbed.process import wait_until

NAME = "latency"
PERCENTILES = (50, 95, 99)


def _finished_more_than(j: Journal, count: int) -> Callable[[], bool]:
    return lambda: j.finished_count() > count


def first_runs(rows: list[Execution]) -> dict[str, Execution]:
    """The first finished execution of each message_id."""
    first: dict[str, Execution] = {}
    for e in rows:
        if e.finished_at is not None:
            first.setdefault(e.message_id, e)
    return first


def run(lab: Lab, target: Target) -> Outcome:
    """Send ``n`` tasks one by one and read their latencies from the journal."""
    n = lab.config.of(NAME)["n"]
    journal = lab.journal(f"{NAME}-{target.name}")
    ids: list[str] = []
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        worker = lab.start_worker(target, "idle", journal, prefetch=1)
        lab.wait_consuming(target.impl, [worker])
        for i in range(n):
            ids.extend(lab.publish(target, ["task"]))
            try:
                wait_until(_finished_more_than(j, i), 30, interval=0.002, what="the task")
            except TimeoutError:
                raise ScenarioFailed(f"message {i + 1}/{n} not finished within 30 s") from None
        rows = j.executions()
    first = first_runs(rows)
    if set(first) != set(ids):
        raise ScenarioFailed("the journal's finished message_ids differ from those published")
    start_ms = [(e.started_at - e.published_at) * 1000 for e in first.values()]
    finish_ms = [((e.finished_at or 0.0) - e.published_at) * 1000 for e in first.values()]
    out = Outcome(samples={"journal": journal, "published": len(ids), "start_ms": start_ms,
                           "finish_ms": finish_ms})  # fmt: skip
    for p in PERCENTILES:
        out.metrics[f"start_p{p}_ms"] = percentile(start_ms, p)
        out.metrics[f"finish_p{p}_ms"] = percentile(finish_ms, p)
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """publish->start and publish->finish percentiles."""
    return [
        Column(f"{kind}_p{p}_ms", f"{label} p{p} ms", ms)
        for kind, label in (("start", "publish->start"), ("finish", "publish->finish"))
        for p in PERCENTILES
    ]


def reading(view: View) -> list[str]:
    """Lowest median first."""
    ranked = sorted(
        (v, r) for r in view.rows(NAME) if (v := view.median(NAME, r, "start_p50_ms")) is not None
    )
    if not ranked:
        return []
    listing = ", ".join(f"{view.label(r)} {v:.1f} ms" for v, r in ranked)
    return [f"Median publish->start latency on an idle worker: {listing}."]


def charts(view: View, out_dir: Path) -> list[Path]:
    """Percentile bars of publish->start and publish->finish."""
    if not plot.has_data(view, NAME, "start_p50_ms"):
        return []
    fig, axes = plot.subplots(1, 2, figsize=(11, 4))
    for ax, kind, label in zip(
        axes, ("start", "finish"), ("publish -> start", "publish -> finish"), strict=True
    ):
        groups = [(NAME, f"{kind}_p{p}_ms", f"p{p}") for p in PERCENTILES]
        plot.bars(ax, view, view.rows(NAME), groups)
        ax.set_ylabel("latency, ms")
        ax.set_title(f"Idle latency {label}")
    plot.legend_outside(axes[1])
    return [plot.save(out_dir, "latency.png")]


def check(c: Checker, run: dict[str, Any]) -> None:
    """Percentiles recomputed from the journal; one finished message per publish."""
    where = f"{NAME}/{run['impl']}"
    first = first_runs(c.rows(run["samples"]))
    n = params(c.results["config"], NAME)["n"]
    if len(first) != n:
        c.problems.append(f"{where}: {len(first)} messages for {n}")
    starts = [(e.started_at - e.published_at) * 1000 for e in first.values()]
    for p in PERCENTILES:
        c.close(run["metrics"][f"start_p{p}_ms"], percentile(starts, p), f"{where} p{p}")
    if sorted(starts) != sorted(run["samples"]["start_ms"]):
        c.problems.append(f"{where}: the stored samples differ from the journal's")


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return f"Latency: {p['n']} tasks one at a time, idle worker"


SCENARIO = Scenario(
    name=NAME,
    title="Latency, idle",
    description=(
        "Zero-work tasks sent one at a time to an idle worker (prefetch 1): publish->start and "
        "publish->finish latency in ms, from the journal."
    ),
    run=run,
    params=(Param("n", 200, 30, "tasks sent one at a time"),),
    settings=settings,
    needs=(
        Need(
            "lowest latency",
            "start_p50_ms",
            True,
            "{:.1f} ms publish->start, median, idle",
            "prefetch 1, a worker already consuming",
        ),
    ),
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    seconds=(2.0, 4.0),
    sampled={
        f"{kind}_p{p}_ms": (f"{kind}_ms", p) for kind in ("start", "finish") for p in PERCENTILES
    },  # fmt: skip
    provides=(IDLE_LATENCY,),
)
