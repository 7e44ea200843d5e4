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

from lab.harness import Lab, Outcome, ScenarioFailed, Worker
from shared.impl import Implementation
from shared.journal import Execution, Journal, by_message
from testbed.process import wait_until

NAME = "crash"
TITLE = "Worker crash"
DESCRIPTION = (
    "Short tasks over two workers; one is SIGKILLed mid-task several times and restarted: "
    "% of message_ids completed, duplicate executions, time to recover."
)
BODY = "task."


def _in_hand(j: Journal, victim: Worker) -> Execution | None:
    pids = set(victim.process.pids())
    for e in reversed(j.executions()):
        if e.finished_at is None and e.pid in pids:
            return e
    return None


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Kill the victim ``lab.config.crash_kills`` times mid-task; read the journal after."""
    cfg = lab.config
    journal = lab.journal(f"crash-{impl.name}")
    out = Outcome()
    kills: list[dict[str, object]] = []
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:

        def start(name: str) -> Worker:
            return lab.start_worker(impl, name, journal, dot_seconds=cfg.crash_dot_seconds)

        steady, victim = start("steady"), start("victim")
        lab.wait_consuming(impl, [steady, victim])
        ids = impl.publish_work([BODY] * cfg.crash_tasks, amqp_url=lab.amqp_url)
        for _ in range(cfg.crash_kills):
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
                out.notes.append(f"{len(kills)} of {cfg.crash_kills} kills: the work ran out")
                break
            killed_at = time.time()
            lab.stop(victim)
            mid_task = next(e for e in j.executions() if e.id == hit.id).finished_at is None
            victim = start("victim")
            kills.append({
                "killed_at": killed_at,
                "message_id": hit.message_id,
                "mid_task": mid_task,
                "restarted_at": victim.spawned_at,
            })  # fmt: skip
        try:
            lab.wait_finished(
                journal, len(ids), min(cfg.drain_timeout, 60), workers=[steady, victim]
            )
        except ScenarioFailed as e:
            out.notes.append(f"not every message finished: {e}")
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
