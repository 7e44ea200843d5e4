"""Latency under load: a steady offered rate at a fraction of the worker's measured capacity.

One worker (prefetch 1, journal on) first drains a probe batch: its capacity is the probe's
rate from the journal (first start to last finish). Then a separate producer process
(:mod:`lab.run.publisher`) publishes through the target's own producer at ``loaded_fraction`` of
that capacity for ``loaded_seconds``, each message handed to the producer at its scheduled
time, as the public queue benchmarks do (a fixed offered rate, latency percentiles). The
worker's publish->start latencies come from the journal, next to the idle ones of the
scenario that provides :data:`~lab.report.view.IDLE_LATENCY` figures (found by the report).
The producer may not reach the offered rate (a confirmed publish costs a round trip): the
achieved rate is reported too.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.stats import percentile
from lab.report.view import IDLE_LATENCY, Column, View, ms, provider, rate
from lab.run.harness import Lab, Outcome, ScenarioFailed, Target
from lab.scenario import Param, Scenario, params, published_between
from shared.journal import Execution, Journal

NAME = "loaded"
PERCENTILES = (50, 95, 99)


def _since(rows: list[Execution], since: float) -> list[Execution]:
    """Finished executions of messages published from ``since`` on (epoch seconds)."""
    return published_between(rows, since, math.inf)


def run(lab: Lab, target: Target) -> Outcome:
    """Probe the capacity, then publish at a fraction of it and read the latencies."""
    cfg, opts = lab.config, lab.config.of(NAME)
    probe = opts["probe"]
    journal = lab.journal(f"{NAME}-{target.name}")
    out = Outcome(samples={"journal": journal})
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        worker = lab.start_worker(target, NAME, journal, prefetch=1)
        lab.wait_consuming(target.impl, [worker])
        lab.publish(target, ["task"] * probe)
        rows = lab.wait_finished(journal, probe, cfg.drain_timeout, workers=[worker])
        done = [e for e in rows if e.finished_at is not None]
        span = max(e.finished_at or 0.0 for e in done) - min(e.started_at for e in done)
        capacity = len(done) / span
        offered = opts["fraction"] * capacity
        producer = lab.publisher(
            target,
            body="task",
            rate=f"{offered:.1f}",
            seconds=opts["seconds"],
            chunk=max(50, int(offered)),
        )
        result = producer.result(opts["seconds"] * 4 + 60)
        if result["errors"]:
            raise ScenarioFailed(f"the producer failed: {result['errors'][0]['error']}")
        ids = result["ids"]
        lab.wait_finished(journal, probe + len(ids), cfg.drain_timeout, workers=[worker])
        loaded = _since(j.executions(), float(result["started_at"]))
    if {e.message_id for e in loaded} != set(ids):
        raise ScenarioFailed("the journal's loaded message_ids differ from those published")
    start_ms = [round((e.started_at - e.published_at) * 1000, 3) for e in loaded]
    out.metrics["capacity_per_s"] = capacity
    out.metrics["offered_per_s"] = offered
    out.metrics["achieved_per_s"] = len(ids) / float(result["seconds"])
    for p in PERCENTILES:
        out.metrics[f"start_p{p}_ms"] = percentile(start_ms, p)
    out.samples.update(
        probe=probe,
        published=len(ids),
        started_at=result["started_at"],
        seconds=result["seconds"],
        start_ms=start_ms,
    )
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Capacity, offered and achieved rates, loaded percentiles next to the idle ones."""
    return [
        Column("capacity_per_s", "capacity (journal on)", rate),
        Column("offered_per_s", "offered", rate),
        Column("achieved_per_s", "achieved", rate),
        *[Column(f"start_p{p}_ms", f"loaded p{p} ms", ms) for p in PERCENTILES],
        *[Column(f"start_p{p}_ms", f"idle p{p} ms", ms, IDLE_LATENCY) for p in PERCENTILES],
    ]


def reading(view: View) -> list[str]:
    """Loaded p99 against idle p99 per row."""
    parts = []
    idle_from = provider(IDLE_LATENCY)
    for r in view.rows(NAME):
        loaded = view.median(NAME, r, "start_p99_ms")
        achieved = view.median(NAME, r, "achieved_per_s")
        idle = view.median(idle_from, r, "start_p99_ms")
        if loaded is not None and achieved is not None:
            parts.append(
                f"{view.label(r)} p99 {loaded:.1f} ms at {achieved:,.0f}/s"
                + (f" (idle {idle:.1f} ms)" if idle is not None else "")
            )
    if not parts:
        return []
    frac = params(view.config, NAME)["fraction"]
    return [f"publish->start under a steady load of {frac:.0%} of capacity: {'; '.join(parts)}."]


def charts(view: View, out_dir: Path) -> list[Path]:
    """CDF of publish->start per row: under load (solid) and idle (dotted)."""
    rows = view.rows(NAME)
    if not any(plot.samples_ms(view, NAME, r) for r in rows):
        return []
    fig, ax = plot.subplots(figsize=(9, 4.5))
    idle_from = provider(IDLE_LATENCY)
    for row in rows:
        colour = plot.colour(row.target)
        plot.cdf(
            ax,
            plot.samples_ms(view, NAME, row),
            color=colour,
            label=f"{view.label(row)}, loaded",
        )
        plot.cdf(
            ax,
            plot.samples_ms(view, idle_from, row),
            color=colour,
            linestyle=":",
            label=f"{view.label(row)}, idle",
        )
    ax.set_xscale("log")
    ax.set_xlabel("publish -> start, ms (log scale)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(
        f"Latency distribution, idle and at {params(view.config, NAME)['fraction']:.0%} load"
    )
    ax.grid(alpha=0.3)
    plot.legend_outside(ax)
    return [plot.save(out_dir, "latency_cdf.png")]


def check(c: Checker, run: dict[str, Any]) -> None:
    """Percentiles and the achieved rate recomputed from the journal."""
    where = f"{NAME}/{run['impl']}"
    s, m = run["samples"], run["metrics"]
    loaded = _since(c.rows(s), float(s["started_at"]))
    if len(loaded) != s["published"]:
        c.problems.append(f"{where}: {len(loaded)} loaded executions of {s['published']}")
    start_ms = [round((e.started_at - e.published_at) * 1000, 3) for e in loaded]
    for p in PERCENTILES:
        c.close(m[f"start_p{p}_ms"], percentile(start_ms, p), f"{where} p{p}")
    c.close(m["achieved_per_s"], s["published"] / s["seconds"], f"{where} achieved")


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Latency under load: {p['fraction']:.0%} of capacity (probed with {p['probe']} "
        f"tasks) for {p['seconds']:g} s"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Latency under load",
    description=(
        "One worker (prefetch 1) at a steady offered rate, a fraction of its capacity measured "
        "just before: publish->start percentiles from the journal, next to the idle ones."
    ),
    run=run,
    params=(
        Param("seconds", 6.0, 2.0, "how long the steady load is published, seconds"),
        Param("fraction", 0.5, 0.5, "the offered rate as a fraction of the measured capacity"),
        Param("probe", 300, 150, "tasks in the capacity probe"),
    ),
    settings=settings,
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    seconds=(3.0, 9.0),
    sampled={f"start_p{p}_ms": ("start_ms", p) for p in PERCENTILES},
    compares_with=(IDLE_LATENCY,),
)
