"""Fairness: two workers, one four times slower, share a batch of tasks.

Both workers consume before the tasks are published. With prefetch 1 RabbitMQ gives a worker a
new message only when it has acknowledged the previous one, so the fast worker should take about
four fifths of the work (RabbitMQ tutorial 2, "Fair dispatch"); with unlimited prefetch
(:attr:`~shared.impl.Implementation.unlimited_prefetch`) deliveries go round-robin, half each,
and the slow worker decides the makespan. The ideal makespan is the best split of the tasks
between the two speeds; makespan is the first start to the last finish in the journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.view import Column, View, pct, ratio
from lab.run.harness import Lab, Outcome, ScenarioFailed, Target
from lab.scenario import Param, Scenario, params
from shared.tasks import work_seconds

NAME = "fairness"
BODY = "task."
"""One unit of work (``lab.config.of(NAME)["dot_seconds"]``) for the fast worker."""


def ideal_makespan(tasks: int, fast: float, slow: float) -> tuple[float, int]:
    """The shortest makespan for ``tasks`` tasks split between a fast and a slow worker.

    Parameters:
        tasks: number of tasks.
        fast: seconds per task on the fast worker.
        slow: seconds per task on the slow worker.

    Returns:
        (makespan in seconds, tasks the fast worker takes in that split).
    """
    return min((max(k * fast, (tasks - k) * slow), k) for k in range(tasks + 1))


def run(lab: Lab, target: Target) -> Outcome:
    """Run the batch at prefetch 1 and at unlimited prefetch; shares come from the journal."""
    cfg, opts = lab.config, lab.config.of(NAME)
    fast = work_seconds(BODY, opts["dot_seconds"])
    slow = fast * opts["slowdown"]
    ideal, ideal_fast = ideal_makespan(opts["tasks"], fast, slow)
    out = Outcome()
    out.samples["ideal"] = {"makespan_s": ideal, "fast_tasks": ideal_fast}
    out.metrics["ideal_makespan_s"] = ideal
    out.metrics["ideal_fast_share_pct"] = 100 * ideal_fast / opts["tasks"]
    impl = target.impl
    for label, prefetch in (("p1", 1), ("unlimited", impl.unlimited_prefetch)):
        lab.reset([impl])
        journal = lab.journal(f"fairness-{target.name}-{label}")
        with lab.workers_scope():
            workers = [
                lab.start_worker(target, "fast", journal, prefetch=prefetch,
                                 dot_seconds=opts["dot_seconds"]),
                lab.start_worker(target, "slow", journal, prefetch=prefetch,
                                 slowdown=opts["slowdown"],
                                 dot_seconds=opts["dot_seconds"]),
            ]  # fmt: skip
            lab.wait_consuming(impl, workers)
            ids = lab.publish(target, [BODY] * opts["tasks"])
            rows = lab.wait_finished(journal, len(ids), cfg.drain_timeout, workers=workers)
        done = [e for e in rows if e.finished_at is not None]
        per_worker = {w: sum(1 for e in done if e.worker == w) for w in ("fast", "slow")}
        if sum(per_worker.values()) < len(ids):
            raise ScenarioFailed(f"finished executions per worker {per_worker} < {len(ids)}")
        makespan = max(e.finished_at or 0.0 for e in done) - min(e.started_at for e in done)
        share = 100 * per_worker["fast"] / sum(per_worker.values())
        out.metrics[f"fast_share_{label}_pct"] = share
        out.metrics[f"makespan_{label}_s"] = makespan
        out.metrics[f"makespan_vs_ideal_{label}"] = makespan / ideal
        out.samples[label] = {
            "prefetch": prefetch,
            "tasks": len(ids),
            "finished_by_worker": per_worker,
            "executions": len(rows),
            "makespan_s": makespan,
            "journal": journal,
        }
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Fast share and makespan over ideal at both prefetch settings."""
    return [
        Column("fast_share_p1_pct", "fast share, prefetch 1", pct),
        Column("makespan_vs_ideal_p1", "makespan/ideal, prefetch 1", ratio),
        Column("fast_share_unlimited_pct", "fast share, unlimited", pct),
        Column("makespan_vs_ideal_unlimited", "makespan/ideal, unlimited", ratio),
        Column("ideal_fast_share_pct", "ideal fast share", pct),
    ]


def reading(view: View) -> list[str]:
    """The fast worker's share at prefetch 1 against unlimited."""
    parts, ideal = [], None
    for r in view.rows(NAME):
        a = view.median(NAME, r, "fast_share_p1_pct")
        b = view.median(NAME, r, "fast_share_unlimited_pct")
        ideal = ideal or view.median(NAME, r, "ideal_fast_share_pct")
        if a is not None and b is not None:
            parts.append(f"{view.label(r)} {a:.0f}% at prefetch 1 vs {b:.0f}% unlimited")
    if not parts:
        return []
    return [
        f"Fast worker's share (ideal {ideal or 80:.0f}%): {'; '.join(parts)}. Prefetch 1 is "
        "what makes dispatch fair; unlimited prefetch splits the work round-robin."
    ]


def charts(view: View, out_dir: Path) -> list[Path]:
    """The fast worker's share at both prefetch settings, with the ideal and round-robin."""
    if not plot.has_data(view, NAME, "fast_share_p1_pct"):
        return []
    fig, ax = plot.subplots(figsize=(8.5, 4))
    groups = [
        (NAME, "fast_share_p1_pct", "prefetch 1"),
        (NAME, "fast_share_unlimited_pct", "unlimited prefetch"),
    ]
    plot.bars(ax, view, view.rows(NAME), groups)
    ideal = next(
        (
            v
            for r in view.rows(NAME)
            if (v := view.median(NAME, r, "ideal_fast_share_pct")) is not None
        ),
        None,
    )
    if ideal is not None:
        ax.axhline(ideal, color="black", linestyle="--", label="ideal")
    ax.axhline(50, color="grey", linestyle=":", label="round-robin")
    plot.legend_outside(ax)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of tasks done by the fast worker")
    ax.set_title("Fair dispatch: fast worker's share (slow worker 4x slower)")
    return [plot.save(out_dir, "fairness.png")]


def check(c: Checker, run: dict[str, Any]) -> None:
    """Shares recomputed from the journals; every task finished."""
    where = f"{NAME}/{run['impl']}"
    for label in ("p1", "unlimited"):
        s = run["samples"][label]
        rows = [e for e in c.rows(s) if e.finished_at is not None]
        if len(rows) != s["tasks"]:
            c.problems.append(f"{where} {label}: {len(rows)} finished of {s['tasks']}")
        share = 100 * sum(1 for e in rows if e.worker == "fast") / max(len(rows), 1)
        c.close(run["metrics"][f"fast_share_{label}_pct"], share, f"{where} {label} share")
        c.shown(f"{share:.1f}%", where)


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Fairness: {p['tasks']} tasks of {p['dot_seconds'] * 1000:.0f} ms, "
        f"slow worker x{p['slowdown']:g}"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Fair dispatch",
    description=(
        "Two workers, one 4x slower, share a batch of tasks: the fast worker's share and the "
        "makespan against the ideal, at prefetch 1 and at unlimited prefetch."
    ),
    run=run,
    params=(
        Param("tasks", 40, 20, "tasks over the two workers"),
        Param("dot_seconds", 0.05, 0.025, "seconds per unit of work for the fast worker"),
        Param("slowdown", 4.0, 4.0, "the slow worker's slowdown factor"),
    ),
    settings=settings,
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    seconds=(3.5, 8.0),
)
