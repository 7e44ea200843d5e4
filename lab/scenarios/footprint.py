"""Footprint: start-up time to the first task, resident memory, and lines of code.

One task waits in the queue; the lab starts a worker and times the spawn to the journal's first
``started_at`` (interpreter, framework import, connection, consumer, first delivery). The lab
does not wait for the consumer to show in the management API first: its statistics are
sampled, so that moment could only be polled late and would not add up with the journal's
figure. Once the task is done the worker is
idle and its resident set size (the whole process group, :meth:`lab.run.harness.Worker.rss_mb`) is
read (the size after load is in the table of the scenario that drains N tasks with the same
worker).

Lines of code are counted twice, without blank lines, comment-only lines and docstrings
(:func:`code_lines`): *tutorial 2* is what a user of the framework writes for the official
tutorial's two programs (the package's ``new_task.py`` and ``worker.py``, the tutorial-sized
core); *whole package* adds the hardening this project builds around them (producers,
consumers, connection handling), which is not what a tutorial reader writes.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.decision import Need
from lab.report.view import Column, View, count, mb, secs
from lab.run.harness import Lab, Outcome, Target
from lab.scenario import Scenario

NAME = "footprint"


TUTORIAL = ("new_task.py", "worker.py")
"""The tutorial-2 programs of every implementation package."""


def code_lines(path: Path) -> int:
    """Lines of ``path`` that hold code: not blank, not only a comment, not in a docstring
    (the first string of a module, class or function)."""
    text = path.read_text(errors="replace")
    docs: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and (isinstance(first.value.value, str))
            ):
                docs |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1
        for i, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and i not in docs
    )


def lines_of_code(package: str) -> dict[str, int]:
    """``{"files", "code", "tutorial"}``: ``package``'s Python files, their code lines, and
    those of its tutorial-2 programs alone (:data:`TUTORIAL`)."""
    module = importlib.import_module(package)
    root = Path(module.__file__ or "").parent
    paths = sorted(root.rglob("*.py"))
    return {
        "files": len(paths),
        "code": sum(code_lines(p) for p in paths),
        "tutorial": sum(code_lines(p) for p in paths if p.parent == root and p.name in TUTORIAL),
    }


def broker_memory_mb(lab: Lab) -> float | None:
    """Memory the broker's running nodes use, MiB (management API ``/api/nodes`` ``mem_used``,
    summed over a cluster's nodes); ``None`` if the API does not say."""
    try:
        nodes = lab.broker.management.api("nodes")
    except Exception:  # the figure is optional; the API's absence is reported elsewhere
        return None
    used = [n["mem_used"] for n in nodes if n.get("running") and "mem_used" in n]
    return sum(used) / 2**20 if used else None


def run(lab: Lab, target: Target) -> Outcome:
    """Time one worker's start-up to its first task and read its idle RSS."""
    impl = target.impl
    journal = lab.journal(f"footprint-{target.name}")
    lab.publish(target, ["task"])
    with lab.workers_scope():
        worker = lab.start_worker(target, "footprint", journal)
        rows = lab.wait_finished(journal, 1, 60, workers=[worker], interval=0.01)
        rss_idle = worker.rss_mb()
        broker_mb = broker_memory_mb(lab)
        processes = len(worker.process.pids())
    loc = lines_of_code(impl.package)
    first = min(e.started_at for e in rows)
    return Outcome(
        metrics={
            "startup_to_first_task_s": first - worker.spawned_at,
            "rss_idle_mb": rss_idle,
            "tutorial_lines": float(loc["tutorial"]),
            "package_lines": float(loc["code"]),
            "broker_mem_mb": broker_mb,
        },
        samples={
            "processes": processes,
            "loc": loc,
            "journal": journal,
            "spawned_at": worker.spawned_at,
        },
    )


def columns(config: dict[str, Any]) -> list[Column]:
    """Start-up, RSS idle, lines of code, broker memory."""
    return [
        Column("startup_to_first_task_s", "start-up to first task", secs),
        Column("rss_idle_mb", "RSS idle", mb),
        Column("tutorial_lines", "lines, tutorial 2", count),
        Column("package_lines", "lines, whole package", count),
        Column("broker_mem_mb", "broker memory", mb),
    ]


def reading(view: View) -> list[str]:
    """Start-up and idle memory per row."""
    parts = []
    for r in view.rows(NAME):
        st = view.median(NAME, r, "startup_to_first_task_s")
        rss = view.median(NAME, r, "rss_idle_mb")
        loc = view.median(NAME, r, "tutorial_lines")
        if st is not None and rss is not None:
            parts.append(
                f"{view.label(r)} {st:.2f} s to the first task, {rss:.0f} MB idle, "
                f"{loc or 0:.0f} lines for tutorial 2"
            )
    return [f"Footprint: {'; '.join(parts)}."] if parts else []


def charts(view: View, out_dir: Path) -> list[Path]:
    """Start-up time, idle memory and lines of code, one panel each."""
    if not plot.has_data(view, NAME, "rss_idle_mb"):
        return []
    fig, axes = plot.subplots(1, 3, figsize=(12, 3.8))
    panels = (
        ("startup_to_first_task_s", "seconds", "Start-up to first task"),
        ("rss_idle_mb", "MiB", "RSS idle"),
        ("tutorial_lines", "lines", "Lines for tutorial 2"),
    )
    for ax, (metric, unit, title) in zip(axes, panels, strict=True):
        plot.bars(ax, view, view.rows(NAME), [(NAME, metric, "")])
        ax.set_ylabel(unit)
        ax.set_title(title)
    plot.legend_outside(axes[-1])
    return [plot.save(out_dir, "footprint.png")]


def check(c: Checker, run: dict[str, Any]) -> None:
    """The start-up figure is spawn -> the journal's first ``started_at``."""
    rows = c.rows(run["samples"])
    if not rows or run["metrics"]["startup_to_first_task_s"] <= 0:
        c.problems.append(f"{NAME}/{run['impl']}: no first task behind the start-up figure")
        return
    spawned = run["samples"].get("spawned_at")
    if spawned is not None:
        first = min(e.started_at for e in rows)
        c.close(run["metrics"]["startup_to_first_task_s"], first - spawned, f"{NAME} start-up")


SCENARIO = Scenario(
    name=NAME,
    title="Footprint",
    description=(
        "Worker start-up time to the first task, RSS idle (MB), "
        "the lines a user writes for tutorial 2 (new_task.py + worker.py, no blank, comment or "
        "docstring lines) beside the whole hardened package's, and the memory the broker's "
        "nodes use with that worker idle (management API mem_used)."
    ),
    run=run,
    needs=(
        Need(
            "least code",
            "tutorial_lines",
            True,
            "{:.0f} lines for tutorial 2 (new_task.py + worker.py)",
            "none beyond the framework's own",
        ),
        Need(
            "smallest footprint",
            "rss_idle_mb",
            True,
            "{:.0f} MB RSS, idle worker",
            "one worker process, concurrency 1",
        ),
    ),
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    seconds=(0.5, 1.0),
)
