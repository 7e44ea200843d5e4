"""Node loss: SIGKILL the cluster node leading the work queue under steady publishing.

Runs on ``--topology cluster`` only (:mod:`testbed.cluster`, ``MQLAB_BROKER=cluster``). Two
workers (prefetch 1) consume while a separate producer process publishes through the target's
own producer at ``nodeloss_rate`` for ``nodeloss_seconds``, every client given every node's
URL (failover). Once a third of the messages have been executed, the lab SIGKILLs the node
leading the work queue (the management API's ``leader``; a classic queue's is the node hosting
it). A quorum queue elects a new leader among the two others (RabbitMQ docs, "Quorum Queues:
Failure handling"); a classic queue lives on one node and is unavailable with it.

Figures: % of the confirmed messages executed (journal), duplicate executions, the publish
calls that raised (the producer saw an error; their messages count as unconfirmed), and the
longest pause in consumption after the kill: the largest gap between consecutive execution
starts where the later start comes after the kill, measured from the kill if the gap began
before it. The killed node is started again (it rejoins) before the next run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker
from lab.report.decision import Need
from lab.report.view import Column, View, count, pct, secs
from lab.run.harness import Lab, Outcome, ScenarioSkipped, Target
from lab.scenario import Param, Scenario, params
from shared.journal import Execution, Journal, by_message
from testbed.process import wait_until

NAME = "nodeloss"
BODY = "task."


def consumption_gap(rows: list[Execution], killed_at: float) -> float | None:
    """The longest pause in execution starts that ends after ``killed_at`` (see docstring)."""
    starts = sorted(e.started_at for e in rows)
    gaps = [
        b - max(a, killed_at) for a, b in zip(starts, starts[1:], strict=False) if b > killed_at
    ]
    return max(gaps) if gaps else None


def run(lab: Lab, target: Target) -> Outcome:
    """Publish steadily, kill the queue's leader, read the outcome from the journal."""
    opts = lab.config.of(NAME)
    cluster = lab.broker
    leader_of = getattr(cluster, "leader_of", None)
    if leader_of is None:
        raise ScenarioSkipped("node loss needs a cluster (--topology cluster)")
    journal = lab.journal(f"nodeloss-{target.name}")
    out = Outcome(samples={"journal": journal})
    dot = 0.005
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        workers = [lab.start_worker(target, w, journal, dot_seconds=dot) for w in ("w1", "w2")]
        lab.wait_consuming(target.impl, workers)
        chunk = max(5, int(opts["rate"] / 5))
        producer = lab.publisher(
            target, body=BODY, rate=opts["rate"], seconds=opts["seconds"], chunk=chunk
        )
        third = int(opts["rate"] * opts["seconds"] / 3)
        wait_until(lambda: j.finished_count() >= third, opts["seconds"] * 3 + 60,
                   interval=0.05, what=f"{third} tasks before the kill")  # fmt: skip
        leader = leader_of(target.queue())
        killed_at = time.time()
        cluster.kill_node(leader)  # type: ignore[attr-defined]
        try:
            result = producer.result(opts["seconds"] * 4 + 120)
            ids = result["ids"]
            with contextlib.suppress(Exception):
                lab.wait_finished(journal, len(ids), opts["settle_deadline"], settle=target.queue())
            lab.stop_all()  # no late duplicate can then start after the journal is read
            rows = j.executions()
        finally:
            lab.stop_all()
            cluster.start_node(leader)  # type: ignore[attr-defined]
    runs = by_message([e for e in rows if e.message_id in set(ids)])
    executed = [m for m in ids if any(e.finished for e in runs.get(m, []))]
    errors = result["errors"]
    gap = consumption_gap(rows, killed_at)
    out.metrics["executed_pct"] = 100 * len(executed) / max(len(ids), 1)
    out.metrics["lost"] = float(len(ids) - len(executed))
    out.metrics["duplicate_executions"] = float(sum(len(r) - 1 for r in runs.values()))
    out.metrics["publish_errors"] = float(len(errors))
    out.metrics["unconfirmed"] = float(sum(int(e["chunk"]) for e in errors))
    out.metrics["consumption_gap_s"] = gap
    out.samples.update(
        published=len(ids),
        executions=len(rows),
        killed_at=killed_at,
        leader=leader.node,
        errors=errors[:5],
        ids=ids,
    )
    if gap is None:
        out.notes.append("no execution started after the kill")
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Executed of confirmed, lost, duplicates, publish errors, consumption pause."""
    return [
        Column("executed_pct", "confirmed executed", pct),
        Column("lost", "lost", count),
        Column("duplicate_executions", "duplicate executions", count),
        Column("publish_errors", "publish errors", count),
        Column("unconfirmed", "unconfirmed messages", count),
        Column("consumption_gap_s", "consumption paused", secs),
    ]


def reading(view: View) -> list[str]:
    """Per row: % of confirmed executed and the pause."""
    parts = []
    for r in view.rows(NAME):
        e = view.median(NAME, r, "executed_pct")
        g = view.median(NAME, r, "consumption_gap_s")
        if e is not None:
            pause = f", consumption paused {g:.1f} s" if g is not None else ", never resumed"
            parts.append(f"{view.label(r)} {e:.1f}% of confirmed executed{pause}")
    if parts:
        return [f"Leader of the work queue SIGKILLed in a 3-node cluster: {'; '.join(parts)}."]
    skipped = view.skipped(NAME)
    return [f"Node loss not measured: {skipped[0]}."] if skipped else []


def charts(view: View, out_dir: Path) -> list[Path]:
    """Confirmed executed %, lost, duplicates and publish errors per row."""
    return plot.outcome_chart(
        view,
        out_dir,
        NAME,
        ("executed_pct", "confirmed executed"),
        [
            ("lost", "lost"),
            ("duplicate_executions", "duplicates"),
            ("publish_errors", "publish errors"),
        ],
        "Queue leader SIGKILLed in a 3-node cluster",
        "confirmed messages",
    )


def check(c: Checker, run: dict[str, Any]) -> None:
    """Executed, lost, duplicates and the pause recomputed from the journal."""
    where = f"{NAME}/{run['impl']}"
    m, s = run["metrics"], run["samples"]
    rows = c.rows(s)
    runs = by_message([e for e in rows if e.message_id in set(s["ids"])])
    finished = {k for k, v in runs.items() if any(e.finished for e in v)}
    c.close(m["executed_pct"], 100 * len(finished) / max(s["published"], 1), f"{where} executed")
    dups = sum(len(r) - 1 for r in runs.values())
    c.close(m["duplicate_executions"], dups, f"{where} duplicates")
    c.close(m["publish_errors"], len(s["error_chunks"]), f"{where} publish errors")
    c.close(m["unconfirmed"], sum(s["error_chunks"]), f"{where} unconfirmed")
    c.close(m["lost"], s["published"] - len(finished), f"{where} lost")
    gap = consumption_gap(rows, s["killed_at"])
    if gap is not None:
        c.close(m["consumption_gap_s"], gap, f"{where} pause")


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return f"Node loss: {p['rate']:g} tasks/s for {p['seconds']:g} s"


SCENARIO = Scenario(
    name=NAME,
    title="Node loss",
    description=(
        "Steady publishing and two workers on a 3-node cluster; the node leading the work queue "
        "is SIGKILLed: % of confirmed messages executed, duplicates, publish calls that raised "
        "(their messages unconfirmed), and the longest pause in consumption after the kill."
    ),
    run=run,
    params=(
        Param("rate", 100.0, 100.0, "messages per second published"),
        Param(
            "seconds",
            12.0,
            8.0,
            "how long it publishes (the leader is killed a third of the way in)",
        ),
        Param(
            "settle_deadline",
            60.0,
            45.0,
            "seconds for the workers to finish the confirmed messages once the producer is done",
        ),
    ),
    settings=settings,
    needs=(
        Need(
            "survive a node loss",
            "executed_pct",
            False,
            "{:.1f}% of confirmed tasks executed after the queue leader was SIGKILLed",
            "quorum queue on 3 nodes, publisher confirms, every node's URL in the client",
            "consumption_gap_s",
            ", consumption paused {:.1f} s",
        ),
    ),
    columns=columns,
    reading=reading,
    charts=charts,
    check=check,
    topologies=("cluster",),
    seconds=(40.0, 50.0),
)
