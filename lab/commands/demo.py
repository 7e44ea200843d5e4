"""``make demo``: two workers share a work queue, and you see who did what.

    python -m lab.commands.demo [--impl pika] [--messages 10] [--slow 3]

Starts a private RabbitMQ node (or uses ``AMQP_URL`` when set), starts two workers of the chosen
implementation at prefetch 1, one of them ``--slow`` times slower, publishes tutorial-2 style
messages through the implementation's producer, and prints which worker handled which message,
read from the execution journal. Everything it started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared import cli, journal
from shared.impl import WorkerSpec
from testbed import registry
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision

DOT_SECONDS = 0.2


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.commands.demo", description=__doc__)
    parser.add_argument("--impl", default="pika", choices=list(registry.KNOWN))
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--slow", type=float, default=3.0, help="slowdown of the second worker")
    args = parser.parse_args()
    console = Console()
    impl = registry.get(args.impl)

    with tempfile.TemporaryDirectory(prefix="mqlab-demo-") as tmp, provision() as broker:
        console.print(broker.describe())
        os.environ["AMQP_URL"] = broker.amqp_url
        journal_path = str(Path(tmp) / "journal.db")
        for queue in impl.queues():
            if broker.provider != "external":
                broker.management.delete_queue(queue)

        workers = {}
        for name, slowdown in (("worker-A", 1.0), (f"worker-B(x{args.slow:g})", args.slow)):
            spec = WorkerSpec(
                name=name,
                prefetch=1,
                slowdown=slowdown,
                journal=journal_path,
                amqp_url=broker.amqp_url,
                dot_seconds=DOT_SECONDS,
            )
            workers[name] = GroupProcess(impl.worker_command(spec), log_path=Path(tmp) / name)
        try:
            wait_until(
                lambda: len(broker.management.consumers(impl.task_queue())) >= 2,
                60,
                what="both workers to consume",
            )
            console.print(f"two {impl.name} workers consuming from '{impl.task_queue()}'")
            bodies = [f"Message {i + 1}" + "." * (1 + i % 3) for i in range(args.messages)]
            started = time.monotonic()
            ids = impl.publish_work(bodies)
            console.print(f"published {len(ids)} persistent messages with publisher confirms")
            wait_until(
                lambda: (
                    journal.read(journal_path)
                    and {e.message_id for e in journal.read(journal_path) if e.finished} >= set(ids)
                ),
                120,
                what="every message to be done",
            )
            elapsed = time.monotonic() - started
            _show(console, bodies, ids, journal.read(journal_path), elapsed)
        finally:
            for proc in workers.values():
                proc.terminate(timeout=20)  # warm shutdown: finish and ack the message in hand
                proc.kill()  # then make sure nothing of its process group is left
        console.print("workers stopped; broker shut down")
    return 0


def _show(
    console: Console,
    bodies: list[str],
    ids: list[str],
    rows: list[journal.Execution],
    elapsed: float,
) -> None:
    by_id = {e.message_id: e for e in rows if e.finished}
    table = Table(title="who handled what")
    for column in ("#", "message", "worker", "work (s)", "publish → done (s)"):
        table.add_column(column)
    for n, (body, message_id) in enumerate(zip(bodies, ids, strict=True), start=1):
        e = by_id[message_id]
        assert e.finished_at is not None
        table.add_row(
            str(n),
            body,
            e.worker,
            f"{e.finished_at - e.started_at:.2f}",
            f"{e.finished_at - e.published_at:.2f}",
        )
    console.print(table)
    counts: dict[str, int] = {}
    for e in by_id.values():
        counts[e.worker] = counts.get(e.worker, 0) + 1
    split = ", ".join(f"{w}: {c}" for w, c in sorted(counts.items()))
    console.print(f"fair dispatch (prefetch 1): {split}; all done in {elapsed:.1f} s")


if __name__ == "__main__":
    cli.run(main)
