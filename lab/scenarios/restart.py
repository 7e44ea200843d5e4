"""Broker restart: SIGKILL the node under load and start it again, workers still running.

Two workers (prefetch 1) consume short tasks while the implementation's producer publishes a
batch under publisher confirms. As soon as every message is confirmed the lab SIGKILLs the
broker (:meth:`shared.broker.Broker.kill`) and starts it again on the same data. A durable
queue keeps its persistent messages across the restart (RabbitMQ docs, "Queues: Durability");
the workers must reconnect by themselves to go on. For each worker the lab reports whether it
executed anything after the broker was back, within a deadline, and how long that took; a
worker that exited or stayed silent is a result (with its reason), and a fresh worker then
drains what is left so "% survived" still counts every message the broker kept.
"""

from __future__ import annotations

import contextlib
import time

from lab.harness import Lab, Outcome, ScenarioFailed
from shared.impl import Implementation
from shared.journal import Journal, by_message
from shared.process import wait_until

NAME = "restart"
TITLE = "Broker restart"
DESCRIPTION = (
    "Confirmed messages under load, then the broker is SIGKILLed and started again with the "
    "workers still running: % survived, whether each worker resumed by itself and how fast."
)
BODY = "task."


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Publish, kill and restart the broker, then read per-worker resumption from the journal."""
    cfg = lab.config
    if not lab.broker.can_kill:
        raise ScenarioFailed(f"a {lab.broker.provider} broker cannot be killed by the lab")
    journal = lab.journal(f"restart-{impl.name}")
    out = Outcome()
    resumed: dict[str, dict[str, object]] = {}
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        workers = [
            lab.start_worker(impl, name, journal, dot_seconds=cfg.restart_dot_seconds)
            for name in ("w1", "w2")
        ]
        lab.wait_consuming(impl, workers)
        ids = impl.publish_work([BODY] * cfg.restart_messages, amqp_url=lab.amqp_url)
        done_before = j.finished_count()
        killed_at = time.time()
        lab.broker.kill()
        lab.broker.start()
        back_at = time.time()
        stats = lab.broker.queue(impl.task_queue())

        def settled() -> bool:
            rows = j.executions()
            for w in workers:
                if w.name in resumed:
                    continue
                after = [
                    e.started_at for e in rows if e.worker == w.name and e.started_at > back_at
                ]
                if after:
                    resumed[w.name] = {"resumed": True, "after_s": min(after) - back_at}
                elif not w.process.alive():
                    resumed[w.name] = {
                        "resumed": False,
                        "reason": f"exited with code {w.process.popen.returncode}: {w.log_tail(2)}",
                    }
            return len(resumed) == len(workers) or j.finished_count() >= len(ids)

        with contextlib.suppress(TimeoutError):
            wait_until(settled, cfg.resume_deadline, interval=0.1, what="the workers to resume")
        for w in workers:
            resumed.setdefault(
                w.name,
                {
                    "resumed": False,
                    "reason": f"no execution within {cfg.resume_deadline:.0f} s of the restart"
                    if j.finished_count() < len(ids)
                    else "nothing was left to do",
                },
            )
        live = [w for w in workers if resumed[w.name]["resumed"]]
        if not live:
            out.notes.append("no worker resumed: a fresh worker drained the queue")
            live = [lab.start_worker(impl, "fresh", journal, dot_seconds=cfg.restart_dot_seconds)]
        try:
            lab.wait_finished(journal, len(ids), cfg.drain_timeout, workers=live)
        except ScenarioFailed as e:
            out.notes.append(f"not every message finished: {e}")
        rows = j.executions()

    runs = by_message([e for e in rows if e.message_id in set(ids)])
    survived = [m for m in ids if any(e.finished for e in runs.get(m, []))]
    out.metrics["survived_pct"] = 100 * len(survived) / len(ids)
    out.metrics["lost"] = float(len(ids) - len(survived))
    out.metrics["duplicate_executions"] = float(sum(len(r) - 1 for r in runs.values()))
    out.metrics["workers_resumed"] = float(sum(1 for r in resumed.values() if r["resumed"]))
    times = [float(str(r["after_s"])) for r in resumed.values() if r["resumed"]]
    out.metrics["resume_max_s"] = max(times) if times else None
    out.metrics["broker_restart_s"] = back_at - killed_at
    for name, r in resumed.items():
        if not r["resumed"]:
            out.notes.append(f"{name} did not resume: {r['reason']}")
    out.samples = {
        "published": len(ids),
        "finished_before_kill": done_before,
        "ready_after_restart": stats.ready if stats else None,
        "executions": len(rows),
        "workers": resumed,
        "journal": journal,
    }
    return out
