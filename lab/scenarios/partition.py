"""Partition: cut the work queue's leader off the cluster while producing and consuming, then
heal, and count in Jepsen's terms (:mod:`testbed.counts`).

Runs on ``--topology cluster`` when the lab's cluster can be partitioned
(:class:`~testbed.netns_cluster.NetnsCluster`: root, ``ip netns``; ``mqlab compare`` starts one
for a run that includes this scenario), else it is skipped with the reason. One worker
(concurrency 2) consumes through node 1, which also leads the work queue (the worker declared
it there); the target's producer publishes one confirmed message every ``pause`` seconds
through another node. Once ``before`` messages are confirmed the leader (and so the worker's
node) is cut off; once the others see it gone the partition is held until ``during`` more are
confirmed or for ``hold`` seconds, whichever comes first (a classic queue lives on the cut node,
so none is confirmed there: it holds the full ``hold``), then healed; after ``before`` more the
producer stops and the queue is drained. Figures: attempted, confirmed, unconfirmed, lost (must
be 0), duplicated, unexpected, recovered, the queue empty after the drain, the publishes
confirmed while cut off and for how long it was, and the seconds until the other nodes saw the
partition and until the cluster was whole again after healing.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from lab.report.checks import Checker
from lab.report.view import Column, View, count, secs
from lab.run.harness import Lab, Outcome, ScenarioSkipped, Target
from lab.scenario import Param, Scenario, ScenarioFailed, params
from shared.journal import Journal
from testbed.counts import Attempt, CountingProducer, confirmed_between
from testbed.counts import count as jepsen_count
from testbed.netns import why_unavailable
from testbed.netns_cluster import NetnsCluster
from testbed.partitions import partitioned
from testbed.partitions import target as scheme_target
from testbed.process import wait_until

NAME = "partition"
COUNTS = ("attempted", "confirmed", "unconfirmed", "lost", "duplicated", "unexpected", "recovered")


def run(lab: Lab, target: Target) -> Outcome:
    """Cut the queue's leader under load, heal, drain, count."""
    cluster, opts = lab.broker, lab.config.of(NAME)
    if not isinstance(cluster, NetnsCluster):
        why = why_unavailable() or "the lab's cluster is not the netns cluster"
        raise ScenarioSkipped(f"partitions need network namespaces ({why})")
    if target.producer_env:
        raise ScenarioSkipped("the partition counts need publisher confirms")
    journal = lab.journal(f"{NAME}-{target.name}")
    queue = target.queue()
    before, during = int(opts["before"]), int(opts["during"])
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        # reconnecting for longer than a cut, a heal and a restart of a node that does not
        # rejoin (testbed.partitions.rejoin): pika's worker would give up after 60 s
        worker = lab.start_worker(target, "w1", journal, dot_seconds=0.005, concurrency=2,
                                  env={"MQLAB_RECONNECT_SECONDS": "300"})  # fmt: skip
        lab.wait_consuming(target.impl, [worker])
        leader = scheme_target(cluster, "leader", queue)
        urls = [n.amqp_url for n in cluster.nodes if n is not leader] + [leader.amqp_url]
        producer = CountingProducer(target.impl, ";".join(urls), [], pause=opts["pause"])
        producer.start()
        deadline = lab.config.drain_timeout
        try:
            producer.wait_confirmed_after(0, before, deadline, f"{before} confirmed")
            with partitioned(cluster, leader) as times:
                seen = time.time()  # the other nodes saw the node gone
                with contextlib.suppress(AssertionError):  # a classic queue: none confirmed
                    producer.wait_confirmed_after(seen, during, opts["hold"], "the partition")
                assert not producer.crashed, producer.crashed
                heal = time.time()
            producer.wait_confirmed_after(time.time(), before, deadline, "after healing")
        except AssertionError as e:
            raise ScenarioFailed(str(e)) from None
        finally:
            producer.stop.set()
            producer.join(timeout=60)
        confirmed = [a.message_id for a in producer.attempts if a.message_id]
        with contextlib.suppress(ScenarioFailed):  # what is missing then is counted lost
            lab.wait_finished(journal, len(confirmed), deadline, settle=queue)
        mark = time.time()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: lab.drained(queue, mark), 30, interval=0.5, what="an empty queue")
        empty = lab.drained(queue, mark)
        lab.stop_all()
        rows = j.executions()
    counts = jepsen_count(producer.attempts, rows, empty)
    out = Outcome(samples={"journal": journal})
    out.metrics = {k: float(v) for k, v in counts.as_dict().items() if k != "queue_empty"}
    out.metrics["queue_empty"] = 1.0 if empty else 0.0
    out.metrics["detected_s"], out.metrics["healed_s"] = times.detected, times.healed
    out.metrics["held_s"] = heal - seen
    out.metrics["confirmed_during"] = float(confirmed_between(producer.attempts, seen, heal))
    out.samples.update(
        attempts=[[a.began, a.ended, a.message_id] for a in producer.attempts],
        executions=len(rows),
        leader=leader.node,
        partition=[seen, heal],
        errors=producer.errors[:5],
    )
    if times.restarted:
        out.notes.append("nodes that did not rejoin after healing were restarted (STUCK_AFTER)")
    if counts.lost:
        out.notes.append(f"{len(counts.lost)} confirmed messages never executed")
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """The Jepsen counts, the queue empty (1/0), detection and healing seconds."""
    return [
        *(Column(k, k, count) for k in COUNTS),
        Column("queue_empty", "queue empty after drain (1 = yes)", count),
        Column("confirmed_during", "confirmed while cut off", count),
        Column("held_s", "cut off for", secs),
        Column("detected_s", "partition seen after", secs),
        Column("healed_s", "whole again after healing", secs),
    ]


def reading(view: View) -> list[str]:
    """Per row: lost, duplicated, unconfirmed, and confirmed while the leader was cut off (0 on
    a classic queue: it lives on the cut node)."""
    parts = []
    for r in view.rows(NAME):
        lost = view.median(NAME, r, "lost")
        dup = view.median(NAME, r, "duplicated")
        unconfirmed = view.median(NAME, r, "unconfirmed")
        during = view.median(NAME, r, "confirmed_during")
        if lost is not None:
            cut_off = "" if during is None else f", {during:.0f} confirmed while cut off"
            parts.append(
                f"{view.label(r)} {lost:.0f} lost, {dup or 0:.0f} duplicated, "
                f"{unconfirmed or 0:.0f} unconfirmed{cut_off}"
            )
    if parts:
        return [f"Work queue leader cut off from a 3-node cluster: {'; '.join(parts)}."]
    skipped = view.skipped(NAME)
    return [f"Partition not measured: {skipped[0]}."] if skipped else []


def check(c: Checker, run: dict[str, Any]) -> None:
    """The counts recomputed from the attempts and the journal."""
    m, s = run["metrics"], run["samples"]
    attempts = [Attempt(b, e, i) for b, e, i in s["attempts"]]
    counts = jepsen_count(attempts, c.rows(s), bool(m["queue_empty"])).as_dict()
    for key in COUNTS:
        c.close(m[key], float(counts[key]), f"{NAME}/{run['impl']} {key}")
    if "partition" in s:  # reports before 2026-12-08 have no partition times
        seen, heal = s["partition"]
        during = float(confirmed_between(attempts, seen, heal))
        c.close(m["confirmed_during"], during, f"{NAME}/{run['impl']} confirmed_during")


def settings(config: dict[str, Any]) -> str:
    """Its line under "Settings" in report.md."""
    p = params(config, NAME)
    return (
        f"Partition: one publish every {p['pause']:g} s; leader cut after {p['before']} "
        f"confirmed, healed after {p['during']} more"
        + (f" or {p['hold']:g} s" if "hold" in p else "")  # none before 2026-12-08
        + " (pause_minority, net_ticktime 4 s)"
    )


SCENARIO = Scenario(
    name=NAME,
    title="Partition",
    description=(
        "The work queue's leader (the worker's node) cut off from a 3-node cluster while "
        "producing and consuming, then healed: Jepsen's counts (lost, duplicated, unexpected, "
        "recovered, unconfirmed) and the seconds to detect and to heal."
    ),
    run=run,
    params=(
        Param("pause", 0.05, 0.05, "seconds between publishes"),
        Param("before", 40, 20, "messages confirmed before the cut, and after healing"),
        Param("during", 40, 20, "messages confirmed during the partition, at most"),
        Param("hold", 30.0, 20.0, "seconds the partition is held at most, once seen"),
    ),
    settings=settings,
    columns=columns,
    reading=reading,
    check=check,
    topologies=("cluster",),
    cluster_kind="netns",
    seconds=(60.0, 90.0),
)
