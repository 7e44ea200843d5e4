"""Why an idle worker starts later than a loaded one: publish->start by how the message was sent.

    MQLAB_QUEUE_TYPE=classic .venv/bin/python docs/anomalies/idle_latency.py --count 60
    MQLAB_QUEUE_TYPE=quorum  .venv/bin/python docs/anomalies/idle_latency.py --count 60

One worker of ``--impl`` (prefetch 1, journal) on a private node
(``testbed.provider.provision("local")``) gets zero-work tasks one at a time, each sent only
after the previous one finished (the lab's latency scenario). The modes alternate message by
message, so load from elsewhere falls on all of them alike:

* ``fresh``: each message through ``publish_work``, a new producer connection per message (what
  the latency scenario does);
* ``held``: one producer connection kept open for all messages of this mode (what the loaded
  scenario's publisher does);
* ``held+idle``: the held connection, after 200 ms without traffic.

publish->start is the journal's ``started_at`` minus the message's ``published_at`` (the
producer's clock just before ``basic.publish``); printed as p50 / p90 per mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shared.impl import WorkerSpec
from shared.journal import Journal
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision
from testbed.registry import get


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=60, help="messages per mode")
    p.add_argument("--impl", default="pika")
    args = p.parse_args()
    impl = get(args.impl)
    tmp = Path(tempfile.mkdtemp(prefix="idle-"))
    journal = str(tmp / "journal.db")
    modes = ("fresh", "held", "held+idle")
    ids: dict[str, list[str]] = {m: [] for m in modes}
    with provision("local") as node:
        url = node.amqp_urls[0]
        spec = WorkerSpec("idle", 1, journal=journal, amqp_url=url)
        with GroupProcess(impl.worker_command(spec), log_path=tmp / "worker.log"):
            wait_until(
                lambda: (
                    (q := node.management.queue(impl.task_queue())) is not None and q.consumers >= 1
                ),
                120,
                what="the worker consuming",
            )
            j = Journal(journal)
            with impl.producer(amqp_url=url) as producer:
                for i in range(args.count * len(modes)):
                    mode = modes[i % len(modes)]
                    if mode == "fresh":
                        ids[mode] += impl.publish_work(["task"], amqp_url=url)
                    else:
                        if mode == "held+idle":
                            time.sleep(0.2)
                        ids[mode].append(producer.publish("task").message_id)
                    wait_until(lambda n=i: j.finished_count() > n, 30, interval=0.002)
            rows = {e.message_id: e for e in j.executions()}
    print(f"{impl.name} {os.environ.get('MQLAB_QUEUE_TYPE', 'classic')}, load {os.getloadavg()}")
    for mode in modes:
        ms = sorted((rows[m].started_at - rows[m].published_at) * 1000 for m in ids[mode])
        p90 = ms[int(0.9 * (len(ms) - 1))]
        print(f"  {mode:10} publish->start p50 {statistics.median(ms):6.2f} ms  p90 {p90:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
