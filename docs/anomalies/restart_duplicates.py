"""Where the broker-restart duplicates come from: the journal's finish times against the kill.

    MQLAB_QUEUE_TYPE=classic .venv/bin/python docs/anomalies/restart_duplicates.py --repeat 3
    MQLAB_QUEUE_TYPE=quorum  .venv/bin/python docs/anomalies/restart_duplicates.py --repeat 3

The lab's restart scenario, reduced to what the question needs: a private node
(``testbed.provider.provision("local")``), two pika workers at prefetch 1 with a journal, 200
``task.`` messages (5 ms of work each) published under confirms, then as soon as every message is
confirmed the node is SIGKILLed, started again on the same data, and the workers reconnect and
drain. For each message executed more than once the first execution is classified by the
journal: *finished before the kill* (its ack was sent, the node lost it) or *in hand at the
kill* (started, not finished: at most one per worker). Printed per run: the duplicates of each
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

from raw_pika.impl import IMPLEMENTATION as PIKA
from shared.impl import WorkerSpec
from shared.journal import Journal, by_message
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision


def one_run(messages: int) -> dict[str, object]:
    """One node, two workers, one kill; the duplicates classified by the journal."""
    tmp = Path(tempfile.mkdtemp(prefix="dups-"))
    journal = str(tmp / "journal.db")
    with provision("local") as node:
        url = node.amqp_urls[0]
        workers = []
        for name in ("w1", "w2"):
            spec = WorkerSpec(name, 1, journal=journal, amqp_url=url, dot_seconds=0.005)
            workers.append(GroupProcess(PIKA.worker_command(spec), log_path=tmp / f"{name}.log"))
        try:
            for w in workers:
                log = tmp / f"{w.command.env['MQLAB_WORKER_NAME']}.log"
                wait_until(lambda: b"waiting for messages" in log.read_bytes(), 60, what="worker")
            j = Journal(journal)
            ids = PIKA.publish_work(["task."] * messages, amqp_url=url)
            node.sync_metadata()
            node.kill()
            killed_at = time.time()
            node.start()
            wait_until(lambda: j.finished_count() >= messages, 300, what="the drain")

            def empty() -> bool:
                conn = pika.BlockingConnection(pika.URLParameters(url))
                try:
                    q = conn.channel().queue_declare(PIKA.task_queue(), passive=True)
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
    args = p.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(one_run(args.messages)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
