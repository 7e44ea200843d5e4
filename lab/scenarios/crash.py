"""Crash: a worker is SIGKILLed mid-task, again and again, while another keeps working.

Two workers (prefetch 1) share a batch of short tasks. Whenever the journal shows the victim in
the middle of a task (a started row without a finish, written by a process of its group), the
lab SIGKILLs the victim's whole process group (:meth:`testbed.process.GroupProcess.kill`) and
starts it again. A task acknowledged only after the work is redelivered to a live consumer
when its channel dies (RabbitMQ docs, "Consumer Acknowledgements": automatic requeue on channel
close), so every message_id should finish; executions beyond one per message are duplicates.
Time to recover is, per kill, from the kill to the interrupted message's finish elsewhere.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker, check_outcome
from lab.report.decision import Need
from lab.report.view import Column, View, count, pct, secs
from lab.run.harness import Lab, Outcome, ScenarioFailed, Target, Worker
from lab.scenario import Param, Scenario, params
from shared.journal import Execution, Journal, by_message
from testbed.process import wait_until

NAME = "crash"
BODY = "task."


def _in_hand(j: Journal, victim: Worker) -> Execution | None:
    pids = set(victim.process.pids())
    for e in reversed(j.executions()):
        if e.finished_at is None and e.pid in pids:
            return e
    return None


def run(lab: Lab, target: Target) -> Outcome:
    """Kill the victim ``lab.config.of(NAME)["kills"]`` times mid-task; read the journal after."""
    cfg, opts = lab.config, lab.config.of(NAME)
    impl = target.impl
    journal = lab.journal(f"crash-{target.name}")
    out = Outcome()
    kills: list[dict[str, object]] = []
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:

        def start(name: str) -> Worker:
            return lab.start_worker(target, name, journal, dot_seconds=opts["dot_seconds"])

        steady, victim = start("steady"), start("victim")
        lab.wait_consuming(impl, [steady, victim])
        ids = lab.publish(target, [BODY] * opts["tasks"])
        for _ in range(opts["kills"]):
            found: list[Execution | None] = [None]

            def victim_busy(v: Worker = victim, found: list[Execution | None] = found) -> bool:
                if j.finished_count() >= len(ids):
                    return True  # nothing left to interrupt
                if not v.process.alive():
                    raise ScenarioFailed(f"the victim worker exited by itself: {v.log_tail()}")
                found[0] = _in_hand(j, v)
                return found[0] is not None

            try:
                wait_until(victim_busy, 60, interval=0.01, what="the victim to start a task")
            except TimeoutError:
                raise ScenarioFailed("the restarted victim took no task within 60 s") from None
            hit = found[0]
            if hit is None:
                out.notes.append(f"{len(kills)} of {opts['kills']} kills: the work ran out")
                break
            killed_at = time.time()
            lab.stop(victim)
            mid_task = next(e for e in j.executions() if e.id == hit.id).finished_at is None
            victim = start("victim")
            kills.append(
                {
                    "killed_at": killed_at,
                    "message_id": hit.message_id,
                    "mid_task": mid_task,
                    "restarted_at": victim.spawned_at,
                }
            )
        try:
            lab.wait_finished(
                journal,
                len(ids),
                min(cfg.drain_timeout, 60),
                workers=[steady, victim],
                settle=impl.task_queue(),
            )
        except ScenarioFailed as e:
            out.notes.append(f"not every message finished: {e}")
        lab.stop_all()  # no late duplicate can then start after the journal is read
        rows = j.executions()

    runs = by_message([e for e in rows if e.message_id in set(ids)])
    completed = [m for m in ids if any(e.finished for e in runs.get(m, []))]
    for k in kills:
        again = [
            e.finished_at
            for e in runs.get(str(k["message_id"]), [])
            if e.finished_at is not None and e.started_at >= float(str(k["killed_at"]))
        ]
        k["recovered_s"] = min(again) - float(str(k["killed_at"])) if again else None
    recovered = [float(str(k["recovered_s"])) for k in kills if k["recovered_s"] is not None]
    out.metrics["completed_pct"] = 100 * len(completed) / len(ids)
    out.metrics["lost"] = float(len(ids) - len(completed))
    out.metrics["duplicate_executions"] = float(sum(len(r) - 1 for r in runs.values()))
    out.metrics["kills"] = float(len(kills))
    out.metrics["kills_mid_task"] = float(sum(1 for k in kills if k["mid_task"]))
    out.metrics["recover_max_s"] = max(recovered) if recovered else None
    out.metrics["recover_mean_s"] = sum(recovered) / len(recovered) if recovered else None
    out.samples = {
        "published": len(ids),
        "executions": len(rows),
        "distinct_message_ids": len(runs),
        "kills": kills,
        "journal": journal,
    }
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Completed, lost, duplicates, kills and recovery times."""
    return [
        Column("completed_pct", "completed", pct),
        Column("lost", "lost", count),
        Column("duplicate_executions", "duplicate executions", count),
        Column("kills_mid_task", "kills mid-task", count),
        Column("recover_mean_s", "recover mean", secs),
        Column("recover_max_s", "recover max", secs),
    ]


def reading(view: View) -> list[str]:
    """Completed and duplicates per row."""
    parts = []
    for r in view.rows(NAME):
        c = view.median(NAME, r, "completed_pct")
        d = view.median(NAME, r, "duplicate_executions")
        if c is not None and d is not None:
            parts.append(f"{view.label(r)} {c:.1f}% completed with {d:.0f} duplicate(s)")
    if not parts:
        return []
    return [
        f"Worker SIGKILLed mid-task: {'; '.join(parts)} (a duplicate is the message in hand at "
        "each kill, redelivered: at-least-once delivery; a row that acks on receipt loses it)."
    ]


def charts(view: View, out_dir: Path) -> list[Path]:
    """Completed %, lost and duplicates per row."""
    return plot.outcome_chart(
        view,
        out_dir,
        NAME,
        ("completed_pct", "completed"),
        [
            ("lost", "lost"),
            ("duplicate_executions", "duplicates"),
            ("kills_mid_task", "kills mid-task"),
        ],
        "Worker SIGKILLed mid-task",
    )


def check(c: Checker, run: dict[str, Any]) -> None:
    """Completed, lost and duplicates from the journal."""
    check_outcome(c, run, "completed_pct")


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Crash: {p['tasks']} tasks of {p['dot_seconds'] * 1000:.0f} ms, "
        f"{p['kills']} SIGKILLs of one of two workers"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Worker crash",
    description=(
        "Short tasks over two workers; one is SIGKILLed mid-task several times and restarted: "
        "% of message_ids completed, duplicate executions, time to recover."
    ),
    run=run,
    params=(
        Param("tasks", 200, 60, "tasks over the two workers"),
        Param("kills", 5, 2, "how many times the victim worker is SIGKILLed mid-task"),
        Param("dot_seconds", 0.05, 0.05, "seconds per unit of work"),
    ),
    settings=settings,
    needs=(
        Need(
            "no loss on worker crash",
            "completed_pct",
            False,
            "{:.1f}% of tasks completed with a worker SIGKILLed mid-task",
            "ack after the work (Celery task_acks_late=True), prefetch 1",
        ),
    ),
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    variants=("defaults",),
    seconds=(3.5, 8.0),
)
