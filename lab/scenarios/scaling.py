"""Scaling: one worker with N task slots, on I/O-bound and on CPU-bound tasks.

Each row runs one worker per concurrency level in its framework's native way (pika: N slot
threads; Celery: prefork ``-c N``, and the ``threads`` pool as a row of its own; Dramatiq:
``-p 1 -t N``), prefetch 1 per slot, so a worker with N slots holds N messages. It drains
``tasks_per_slot x N`` I/O tasks (a sleep of ``scaling_task_seconds``, tutorial 2's dots) and
then as many CPU tasks (the catalogue's pure-Python CPU unit, ``*``), rates from the journal
(first start to last finish of each batch).

The ideal for I/O is ``N / task time``: N sleeps overlap perfectly. For CPU it is
``min(N, cores) / unit time``, the unit timed in the lab's own process before the run (its
fastest of 7 tries, so a busy machine shows as lost efficiency, not a lower ideal): pure
Python holds the GIL, so threads cannot beat one core, and processes cannot beat the cores.
Efficiency is the rate over that ideal.

The worker's CPU per task (its process tree, user + system, :mod:`lab.run.cost`) is read from
just before each batch is published to the moment its last task is finished, over the batch's
tasks, by ``psutil`` and independently from ``/proc``; the check compares the two. A journal is
written here, so it is the framework's cost plus two SQLite writes per task.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.decision import Need
from lab.report.view import Column, Row, View, cell, pct, rate, us
from lab.run import cost
from lab.run.harness import Lab, Outcome, ScenarioFailed, Target
from lab.scenario import Param, Scenario, params, published_between
from shared import tasks
from shared.journal import Execution, Journal

NAME = "scaling"
KINDS = ("io", "cpu")
CPU_BODY: str = getattr(tasks, "CPU_MARKER", "*")
"""One unit of the catalogue's CPU work."""


def cpu_unit_seconds() -> float:
    """The catalogue's CPU unit timed here, seconds (the fastest of 7: the unit's own cost,
    without the waits another process on the machine adds); 0.0 without one."""
    cpu = getattr(tasks, "cpu", None)
    if cpu is None:
        return 0.0
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        cpu(1)
        times.append(time.perf_counter() - t0)
    return min(times)


def batch_rate(rows: list[Execution], since: float, until: float) -> tuple[float, int]:
    """(tasks/s, tasks) of the finished executions published in ``[since, until)``."""
    done = published_between(rows, since, until)
    if len(done) < 2:
        raise ValueError(f"{len(done)} finished tasks between {since} and {until}")
    span = max(e.finished_at or 0.0 for e in done) - min(e.started_at for e in done)
    return len(done) / span, len(done)


def ideal(kind: str, level: int, task_s: float, unit_s: float, cores: int) -> float:
    """The ideal tasks/s of ``kind`` at concurrency ``level`` (see the module docstring)."""
    if kind == "io":
        return level / task_s
    return min(level, cores) / unit_s


def run(lab: Lab, target: Target) -> Outcome:
    """Every concurrency level: I/O batch, then CPU batch, through one worker."""
    cfg, opts = lab.config, lab.config.of(NAME)
    unit_s, cores = cpu_unit_seconds(), os.cpu_count() or 1
    out = Outcome(samples={"cpu_unit_s": unit_s, "cores": cores, "task_s": opts["task_seconds"]})
    if unit_s == 0.0:
        out.notes.append("no CPU task in the catalogue (shared.tasks.cpu): I/O only")
    for level in opts["levels"]:
        lab.reset([target.impl])
        n = opts["tasks_per_slot"] * level
        journal = lab.journal(f"scaling-{target.name}-c{level}")
        marks: dict[str, float] = {}
        with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
            worker = lab.start_worker(
                target,
                f"c{level}",
                journal,
                prefetch=1,
                dot_seconds=opts["task_seconds"],
                concurrency=level,
            )
            lab.wait_consuming(target.impl, [worker])
            done = 0
            lab_cpu = cost.CpuProbe(worker.process.pid, [])
            used: dict[str, dict[str, list[float]]] = {}
            for kind, body in (("io", "."), ("cpu", CPU_BODY if unit_s else "")):
                if not body:
                    continue
                marks[kind] = time.time()
                ends = [(lab_cpu().get("consumer", 0.0), cost.group_cpu(worker.process.pid))]
                lab.publish(target, [body] * n)
                done += n
                lab.wait_finished(journal, done, cfg.drain_timeout, workers=[worker])
                ends.append((lab_cpu().get("consumer", 0.0), cost.group_cpu(worker.process.pid)))
                used[kind] = {"lab": [e[0] for e in ends], "proc": [e[1] for e in ends]}
            marks["end"] = time.time()
            rows = j.executions()
        level_samples: dict[str, Any] = {"journal": journal, "tasks": n, "marks": marks,
                                         "worker_cpu_s": used}  # fmt: skip
        for kind, readings in used.items():
            out.metrics[f"{kind}_c{level}_cpu_us"] = _per_task(readings["lab"], n)
        for kind in KINDS:
            if kind not in marks:
                continue
            until = marks["cpu"] if kind == "io" and "cpu" in marks else marks["end"]
            try:
                r, count = batch_rate(rows, marks[kind], until)
            except ValueError as e:
                raise ScenarioFailed(f"c{level} {kind}: {e}") from None
            best = ideal(kind, level, opts["task_seconds"], unit_s, cores)
            out.metrics[f"{kind}_c{level}_per_s"] = r
            out.metrics[f"{kind}_c{level}_eff_pct"] = 100 * r / best
            level_samples[f"{kind}_finished"] = count
        out.samples[f"c{level}"] = level_samples
    return out


def _per_task(ends: list[float], n: int) -> float:
    """Worker CPU microseconds per task between two readings (seconds) over ``n`` tasks."""
    return (ends[1] - ends[0]) / n * 1e6


def columns(config: dict[str, Any]) -> list[Column]:
    """Tasks/s (and efficiency) per kind and level; the worker's CPU per task at the top."""
    top = params(config, NAME)["levels"][-1]
    return [
        Column(f"{kind}_c{c}_per_s", f"{'I/O' if kind == 'io' else 'CPU'} c={c}", rate)
        for kind in KINDS
        for c in params(config, NAME)["levels"]
    ] + [
        Column(f"{kind}_c{top}_cpu_us", f"worker CPU us/task, {label} c={top}", us)
        for kind, label in (("io", "I/O"), ("cpu", "CPU"))
    ]


def cell_text(view: View, row: Row, metric: str) -> str | None:
    """``480/s (96%)``: the rate and its efficiency against the ideal."""
    s = view.summary(NAME, row, metric)
    if s is None or not metric.endswith("_per_s"):
        return None
    eff = view.summary(NAME, row, metric.replace("_per_s", "_eff_pct"))
    return cell(s, rate) + (f" ({cell(eff, pct)})" if eff else "")


def reading(view: View) -> list[str]:
    """The best row at the top level, for each kind."""
    out = []
    top = params(view.config, NAME)["levels"][-1]
    for kind, label in (("io", "I/O-bound"), ("cpu", "CPU-bound")):
        parts = []
        for r in view.rows(NAME):
            v = view.median(NAME, r, f"{kind}_c{top}_per_s")
            e = view.median(NAME, r, f"{kind}_c{top}_eff_pct")
            if v is not None and e is not None:
                parts.append((v, f"{view.label(r)} {v:,.0f}/s ({e:.0f}% of ideal)"))
        if parts:
            listing = ", ".join(text for _v, text in sorted(parts, reverse=True))
            out.append(f"{label} tasks at concurrency {top}, fastest first: {listing}.")
    return out


def charts(view: View, out_dir: Path) -> list[Path]:
    """Tasks/s against concurrency per row, with the ideal line, one panel per kind."""
    levels = params(view.config, NAME)["levels"]
    rows = view.rows(NAME)
    if not any(plot.has_data(view, NAME, f"io_c{c}_per_s") for c in levels):
        return []
    fig, axes = plot.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind, title in zip(
        axes, KINDS, ("I/O-bound (sleep)", "CPU-bound (pure Python)"), strict=True
    ):
        for row in rows:
            xs, ys, lo, hi = [], [], [], []
            for c in levels:
                s = view.summary(NAME, row, f"{kind}_c{c}_per_s")
                if s is not None:
                    xs.append(c)
                    ys.append(s.median)
                    low, high = plot.error(s)
                    lo.append(low)
                    hi.append(high)
            if xs:
                style = "--" if plot.variant(row.target) else "-"
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lo, hi] if any(lo + hi) else None,
                    marker="o",
                    linestyle=style,
                    capsize=3,
                    color=plot.colour(row.target),
                    alpha=plot.alpha(view, row),
                    label=view.label(row),
                )
        first = next((r for r in view.results.runs if r.scenario == NAME and r.samples), None)
        if first is not None:
            fs = first.samples
            unit = fs.get("cpu_unit_s") or 0.0
            if kind == "io" or unit:
                best = [ideal(kind, c, fs["task_s"], unit, fs["cores"]) for c in levels]
                ax.plot(levels, best, color="black", linestyle=":", label="ideal")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel(f"concurrency (task slots of one worker); {plot.repeats_note(view)}")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("tasks per second")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    plot.legend_outside(axes[1])
    return [plot.save(out_dir, "scaling.png")]


def check(c: Checker, run: dict[str, Any]) -> None:
    """Rates recomputed from the journals, efficiency from the rate and the ideal."""
    where = f"{NAME}/{run['impl']}"
    s = run["samples"]
    for level in params(c.results["config"], NAME)["levels"]:
        ls = s.get(f"c{level}")
        if ls is None:
            c.problems.append(f"{where}: no samples for c{level}")
            continue
        rows, marks = c.rows(ls), ls["marks"]
        for kind in KINDS:
            if kind not in marks:
                continue
            until = marks["cpu"] if kind == "io" and "cpu" in marks else marks["end"]
            r, count = batch_rate(rows, marks[kind], until)
            if count != ls["tasks"]:
                c.problems.append(f"{where} c{level} {kind}: {count} finished of {ls['tasks']}")
            c.close(run["metrics"][f"{kind}_c{level}_per_s"], r, f"{where} c{level} {kind}")
            best = ideal(kind, level, s["task_s"], s["cpu_unit_s"], s["cores"])
            c.close(
                run["metrics"][f"{kind}_c{level}_eff_pct"],
                100 * r / best,
                f"{where} c{level} {kind} efficiency",
            )
            used = ls.get("worker_cpu_s", {}).get(kind)
            if used is None:
                continue
            mine = _per_task(used["lab"], ls["tasks"])
            c.close(run["metrics"][f"{kind}_c{level}_cpu_us"], mine, f"{where} c{level} {kind} CPU")
            other = _per_task(used["proc"], ls["tasks"])
            if not cost.agrees(mine, other, ls["tasks"], 0.10):
                c.problems.append(
                    f"{where} c{level} {kind} CPU: lab {mine:.0f} us/task, /proc {other:.0f}"
                )


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Scaling: concurrency {', '.join(str(c) for c in p['levels'])}, tasks of "
        f"{p['task_seconds'] * 1000:.0f} ms, {p['tasks_per_slot']} per slot"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Scaling with concurrency",
    description=(
        "One worker with N task slots in its framework's native way (pika threads, Celery "
        "prefork -c N and the threads pool, Dramatiq -p 1 -t N), prefetch 1 per slot: tasks/s "
        "on I/O-bound tasks (a sleep) and CPU-bound tasks (pure Python), with the efficiency "
        "against the ideal in brackets (I/O: N / task time; CPU: min(N, cores) / unit time)."
    ),
    run=run,
    params=(
        Param("levels", (1, 2, 4, 8, 16), (1, 4), "the concurrency levels"),
        Param("task_seconds", 0.02, 0.02, "the I/O task's sleep and the CPU task's work, seconds"),
        Param("tasks_per_slot", 30, 12, "tasks per run per unit of concurrency"),
    ),
    settings=settings,
    needs=(
        Need(
            "CPU-bound work",
            "cpu_c{top}_per_s",
            False,
            "{:,.0f} tasks/s at concurrency {top}",
            "one slot per core: processes, not threads",
            words=lambda p: {"top": p["levels"][-1]},
        ),
        Need(
            "I/O-bound work",
            "io_c{top}_per_s",
            False,
            "{:,.0f} tasks/s at concurrency {top}",
            "many slots (threads) with prefetch 1 per slot",
            words=lambda p: {"top": p["levels"][-1]},
        ),
    ),
    columns=columns,
    cell=cell_text,
    reading=reading,
    charts=charts,
    check=check,
    variants=("threads",),
    topologies=("single",),
    seconds=(4.5, 37.0),
)
