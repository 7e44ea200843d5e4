"""Where the broker-restart duplicates come from: the journal's finish times against the kill.

    MQLAB_QUEUE_TYPE=classic .venv/bin/python docs/anomalies/restart_duplicates.py --impl pika
    MQLAB_QUEUE_TYPE=quorum  .venv/bin/python docs/anomalies/restart_duplicates.py --impl pika

The lab's restart scenario, reduced to what the question needs: a private node
(``testbed.provider.provision("local")``), two workers of ``--impl`` at prefetch 1 with a
journal, ``--messages`` ``task.`` messages (5 ms of work each) published by the implementation's
producer under confirms, then as soon as the producer returns (every message confirmed) the node
is SIGKILLed, started again on the same data, and the workers reconnect and drain. The queue
definitions are synced to disk before publishing (``Node.sync_metadata``), so the kill follows
the last confirm at once; with ``--sync-before-kill`` they are synced between the last confirm
and the kill instead, as the lab's restart scenario does (that takes about a second).

For each message executed more than once the first execution is classified by the journal:
*finished before the kill* (its ack was sent or queued, the node lost it) or *in hand at the
kill* (started, not finished, or never finished). Printed per run: the duplicates of each
kind, the ages at the kill of the finished-but-lost acks (kill time minus finish time, ms), and
how many messages had finished before the kill.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pika

from shared.impl import WorkerSpec
from shared.journal import Journal, by_message
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision
from testbed.registry import get


def one_run(impl_name: str, messages: int, sync_before_kill: bool) -> dict[str, object]:
    """One node, two workers, one kill; the duplicates classified by the journal."""
    impl = get(impl_name)
    tmp = Path(tempfile.mkdtemp(prefix="dups-"))
    journal = str(tmp / "journal.db")
    with provision("local") as node:
        url = node.amqp_urls[0]
        workers = []
        for name in ("w1", "w2"):
            spec = WorkerSpec(name, 1, journal=journal, amqp_url=url, dot_seconds=0.005)
            workers.append(GroupProcess(impl.worker_command(spec), log_path=tmp / f"{name}.log"))
        try:
            management = node.management
            wait_until(
                lambda: (q := management.queue(impl.task_queue())) is not None and q.consumers >= 2,
                120,
                what="both workers consuming",
            )
            j = Journal(journal)
            if not sync_before_kill:
                node.sync_metadata()
            ids = impl.publish_work(["task."] * messages, amqp_url=url)
            confirmed_at = time.time()
            if sync_before_kill:
                node.sync_metadata()
            done_at_kill = j.finished_count()
            node.kill()
            killed_at = time.time()
            node.start()
            wait_until(lambda: j.finished_count() >= messages, 300, what="the drain")

            def empty() -> bool:
                conn = pika.BlockingConnection(pika.URLParameters(url))
                try:
                    q = conn.channel().queue_declare(impl.task_queue(), passive=True)
                    return q.method.message_count == 0
                finally:
                    conn.close()

            wait_until(empty, 60, what="an empty queue")
            time.sleep(2)  # redeliveries in hand finish
            rows = j.executions()
        finally:
            for w in workers:
                w.kill()
    runs = by_message([e for e in rows if e.message_id in set(ids)])
    lost_ack_ages, in_hand = [], 0
    for execs in runs.values():
        if len(execs) < 2:
            continue
        first = execs[0]
        if first.finished_at is not None and first.finished_at < killed_at:
            lost_ack_ages.append(round((killed_at - first.finished_at) * 1000, 1))
        else:
            in_hand += 1
    finished_before = sum(
        1 for e in rows if e.finished_at is not None and e.finished_at < killed_at
    )
    return {
        "impl": impl_name,
        "sync_before_kill": sync_before_kill,
        "kill_after_confirm_ms": round((killed_at - confirmed_at) * 1000),
        "journal_finished_at_kill": done_at_kill,
        "queue_type": os.environ.get("MQLAB_QUEUE_TYPE", "classic"),
        "messages": messages,
        "finished_before_kill": finished_before,
        "duplicates": sum(len(x) - 1 for x in runs.values()),
        "dup_finished_before_kill": len(lost_ack_ages),
        "dup_in_hand_at_kill": in_hand,
        "lost_ack_age_ms_median": statistics.median(lost_ack_ages) if lost_ack_ages else None,
        "lost_ack_age_ms_max": max(lost_ack_ages) if lost_ack_ages else None,
        "lost": sum(1 for m in ids if not any(e.finished for e in runs.get(m, []))),
        "loadavg1": os.getloadavg()[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--impl", default="pika")
    p.add_argument("--sync-before-kill", action="store_true")
    args = p.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(one_run(args.impl, args.messages, args.sync_before_kill)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
