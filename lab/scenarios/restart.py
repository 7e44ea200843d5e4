"""Node restart: SIGKILL the node under load and start it again, workers still running.

The implementation's producer publishes a batch of short tasks under publisher confirms; then
two workers (prefetch 1) start on it, and as soon as the journal shows them through the first
:data:`STARTED_SHARE` of it the lab SIGKILLs the broker (:meth:`testbed.node.Node.kill`), so
every implementation has work queued at the kill whatever its consume rate against its publish
rate (workers started first could keep up with the producer and leave nothing to resume; where
nothing is queued, resumption is "not measured", not 0). The lab then starts the node again on
the same data. A durable queue keeps its persistent messages across the restart (RabbitMQ
docs, "Queues: Durability"); the workers must reconnect by themselves to go on.

Two moments are measured from the lab itself. *Killed*: when the node's process group is dead.
*Ready*: the first time the node's AMQP port accepts a TCP connection again, polled every
20 ms from a thread of the lab while the node boots (RabbitMQ opens its listeners only at the
end of boot, after the durable queues are recovered; RabbitMQ docs, "Networking"). "Node
down->ready" is ready minus killed. For each worker the lab reads from the journal its first
execution that started at or after *ready* ("first task after broker ready" is that start minus
ready, so at most ~20 ms of polling lateness); executions that started after the kill but before
the broker was ready (messages the client had already been handed) are counted separately and
do not count as resuming. A worker that exited or stayed silent is a result (with its reason),
and a fresh worker then drains what is left so "% survived" still counts every message the
broker kept.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lab.report import plot
from lab.report.checks import Checker, check_outcome
from lab.report.view import Column, View, count, pct, secs
from lab.run.drain import ready_count
from lab.run.harness import Lab, Outcome, ScenarioFailed, ScenarioSkipped, Target
from lab.scenario import Param, Scenario, params
from shared.journal import Journal, by_message
from testbed.process import wait_until

NAME = "restart"
BODY = "task."
PORT_POLL_S = 0.02
"""How often the lab tries the AMQP port while the node boots, seconds."""
STARTED_SHARE = 0.05
"""The share of the ``messages`` the workers finish before the kill: they are mid-drain, and
the rest is still queued, whatever their rate against the producer's."""


class PortWatch:
    """Record the first moment (epoch seconds) a TCP connection to ``amqp_url``'s port succeeds.

    Started right after the node was killed. A success counts only after a refused attempt,
    so a listener of the dying node (its socket lingers for a few ms after the SIGKILL) is
    never taken for the restarted node's.
    """

    def __init__(self, amqp_url: str) -> None:
        url = urlparse(amqp_url)
        self.address = (url.hostname or "localhost", url.port or 5672)
        self.ready_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        seen_closed = False
        while not self._stop.is_set():
            try:
                with socket.create_connection(self.address, timeout=0.5):
                    if seen_closed:
                        self.ready_at = time.time()
                        return
            except OSError:
                seen_closed = True
            self._stop.wait(PORT_POLL_S)

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        self._thread.join()


def run(lab: Lab, target: Target) -> Outcome:
    """Publish, kill and restart the broker, then read per-worker resumption from the journal."""
    cfg, opts = lab.config, lab.config.of(NAME)
    impl = target.impl
    if not lab.broker.can_kill:
        raise ScenarioSkipped(f"an {lab.broker.provider} broker cannot be killed by the lab")
    journal = lab.journal(f"restart-{target.name}")
    out = Outcome()
    resumed: dict[str, dict[str, object]] = {}
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        ids = lab.publish(target, [BODY] * opts["messages"])
        # The queues are on disk (Node.sync_metadata): the scenario measures the messages and
        # the workers, not RabbitMQ's metadata window.
        lab.broker.sync_metadata()
        workers = [
            lab.start_worker(target, name, journal, dot_seconds=opts["dot_seconds"])
            for name in ("w1", "w2")
        ]
        some = max(2, int(len(ids) * STARTED_SHARE))
        wait_until(lambda: j.finished_count() >= some, cfg.drain_timeout, interval=0.01,
                   what=f"the workers to finish {some} tasks")  # fmt: skip
        backlog = ready_count(lab.node_url, impl.task_queue())
        done_before = j.finished_count()
        lab.broker.kill()
        killed_at = time.time()
        watch = PortWatch(lab.node_url)
        try:
            lab.broker.start()
        finally:
            watch.stop()
        back_at = time.time()
        ready_at = watch.ready_at if watch.ready_at is not None else back_at
        queue = impl.task_queue()
        stats = lab.broker.management.queue(queue)

        def settled() -> bool:
            rows = j.executions()
            for w in workers:
                if w.name in resumed:
                    continue
                after = [
                    e.started_at for e in rows if e.worker == w.name and e.started_at >= ready_at
                ]
                if after:
                    resumed[w.name] = {"resumed": True, "after_s": min(after) - ready_at}
                elif not w.process.alive():
                    resumed[w.name] = {
                        "resumed": False,
                        "reason": f"exited with code {w.process.popen.returncode}: {w.log_tail(2)}",
                    }
            if len(resumed) == len(workers) or j.finished_count() >= len(ids):
                return True
            return lab.drained(queue, ready_at)  # nothing survived that is still to do

        with contextlib.suppress(TimeoutError):
            wait_until(settled, opts["resume_deadline"], interval=0.1, what="the workers to resume")
        empty = j.finished_count() >= len(ids) or lab.drained(queue, ready_at)
        for w in workers:
            resumed.setdefault(
                w.name,
                {
                    "resumed": False,
                    "reason": "nothing was left to do"
                    if empty
                    else f"no execution within {opts['resume_deadline']:.0f} s of the restart",
                },
            )
        live = [w for w in workers if resumed[w.name]["resumed"]] or workers
        if not empty and not any(resumed[w.name]["resumed"] for w in workers):
            out.notes.append("no worker resumed: a fresh worker drained the queue")
            live = [lab.start_worker(target, "fresh", journal, dot_seconds=opts["dot_seconds"])]
        try:
            lab.wait_finished(journal, len(ids), cfg.drain_timeout, workers=live, settle=queue)
        except ScenarioFailed as e:
            out.notes.append(f"not every message finished: {e}")
        lab.stop_all()  # no late duplicate can then start after the journal is read
        rows = j.executions()
    for w in workers:  # the final journal decides, as the checks read it
        after = [e.started_at for e in rows if e.worker == w.name and e.started_at >= ready_at]
        if after:
            resumed[w.name] = {"resumed": True, "after_s": min(after) - ready_at}

    runs = by_message([e for e in rows if e.message_id in set(ids)])
    survived = [m for m in ids if any(e.finished for e in runs.get(m, []))]
    out.metrics["survived_pct"] = 100 * len(survived) / len(ids)
    out.metrics["lost"] = float(len(ids) - len(survived))
    out.metrics["duplicate_executions"] = float(sum(len(r) - 1 for r in runs.values()))
    if backlog == 0 and not any(r["resumed"] for r in resumed.values()):
        out.metrics["workers_resumed"] = None  # nothing queued at the kill: not measured
        out.notes.append("no work was queued at the kill: resumption not measured")
    else:
        out.metrics["workers_resumed"] = float(sum(1 for r in resumed.values() if r["resumed"]))
    times = [float(str(r["after_s"])) for r in resumed.values() if r["resumed"]]
    out.metrics["first_task_after_ready_max_s"] = max(times) if times else None
    out.metrics["broker_down_to_ready_s"] = ready_at - killed_at
    for name, r in resumed.items():
        if not r["resumed"]:
            out.notes.append(f"{name} did not resume: {r['reason']}")
    out.samples = {
        "published": len(ids),
        "ready_at_kill": backlog,
        "finished_before_kill": done_before,
        "killed_at": killed_at,
        "amqp_port_ready_at": ready_at,
        "amqp_port_polled": watch.ready_at is not None,
        "start_returned_at": back_at,
        "started_while_down": sum(1 for e in rows if killed_at <= e.started_at < ready_at),
        "ready_after_restart": stats.ready if stats else None,
        "executions": len(rows),
        "workers": resumed,
        "journal": journal,
    }
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Survived, lost, duplicates, resumption."""
    return [
        Column("survived_pct", "survived", pct),
        Column("lost", "lost", count),
        Column("duplicate_executions", "duplicate executions", count),
        Column("workers_resumed", "workers resumed (of 2)", count),
        Column("broker_down_to_ready_s", "broker down->ready", secs),
        Column("first_task_after_ready_max_s", "first task after broker ready", secs),
    ]


def reading(view: View) -> list[str]:
    """Survival and resumption per row."""
    parts = []
    for r in view.rows(NAME):
        sv = view.median(NAME, r, "survived_pct")
        wr = view.median(NAME, r, "workers_resumed")
        ft = view.median(NAME, r, "first_task_after_ready_max_s")
        if sv is not None:
            both = f" (both within {ft:.2f} s of the broker being ready)" if ft and wr == 2 else ""
            resumed = (
                f"{wr:.0f}/2 workers resumed{both}"
                if wr is not None
                else "resumption not measured (no work queued at the kill)"
            )
            parts.append(f"{view.label(r)} {sv:.1f}% survived, {resumed}")
    if parts:
        return [f"Node SIGKILLed and restarted: {'; '.join(parts)}."]
    skipped = view.skipped(NAME)
    return [f"Node restart not measured: {skipped[0]}."] if skipped else []


def charts(view: View, out_dir: Path) -> list[Path]:
    """Survived %, and the message counts lost and duplicated, per row (the workers resumed,
    a count of another kind, are in the table only)."""
    return plot.outcome_chart(
        view,
        out_dir,
        NAME,
        ("survived_pct", "survived"),
        [("lost", "lost"), ("duplicate_executions", "duplicate executions")],
        "Broker SIGKILLed and restarted under load",
    )


def check(c: Checker, run: dict[str, Any]) -> None:
    """Survival from the journal; resumption against the moment the AMQP port was back."""
    check_outcome(c, run, "survived_pct")
    where = f"{NAME}/{run['impl']}"
    m, s = run["metrics"], run["samples"]
    rows = c.rows(s)
    ready, killed = s["amqp_port_ready_at"], s["killed_at"]
    c.close(m["broker_down_to_ready_s"], ready - killed, f"{where} down->ready")
    firsts = [
        min(e.started_at for e in rows if e.worker == w and e.started_at >= ready)
        for w in ("w1", "w2")
        if any(e.worker == w and e.started_at >= ready for e in rows)
    ]
    if m["workers_resumed"] is not None or firsts:
        c.close(m["workers_resumed"], len(firsts), f"{where} workers resumed")
    if firsts:
        after = max(firsts) - ready
        c.close(m["first_task_after_ready_max_s"], after, f"{where} resume")
        c.shown(f"{after:.2f} s", where)


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Restart: {p['messages']:,} tasks of {p['dot_seconds'] * 1000:.0f} ms, "
        f"resume deadline {p['resume_deadline']:.0f} s"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Node restart",
    description=(
        "Messages published, two workers started on them, and once they are through 5% the "
        "broker is SIGKILLed (the rest still queued) and started again with the workers still "
        "running: % survived, whether each worker resumed by itself and how "
        "fast. *broker down->ready* runs from the SIGKILL to the moment the node's AMQP port "
        "accepts connections again (polled by the lab every 20 ms); *first task after broker "
        "ready* from that moment to the first task a worker started (journal `started_at`), for "
        "the slower of the two workers."
    ),
    run=run,
    params=(
        Param("messages", 1000, 200, "confirmed messages published before the broker is killed"),
        Param("dot_seconds", 0.005, 0.005, "seconds per unit of work"),
        Param(
            "resume_deadline",
            30.0,
            15.0,
            "seconds a worker has to resume once the broker is back (its AMQP port answers)",
        ),
    ),
    settings=settings,
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    variants=("defaults",),
    quick_variants=False,
    topologies=("single",),
    seconds=(8.0, 15.0),
)
