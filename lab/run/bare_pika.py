"""The bare pika loop: a baseline a scenario can compare an implementation's rates with.

The same work as an implementation's producer and worker, without the implementation: one
blocking pika connection publishing persistent messages one at a time under publisher confirms
(RabbitMQ docs, "Publishers": confirms), and one consumer process acknowledging each delivery at
the given prefetch (``basic.qos``), with no journal, no logging and no task call. Whatever an
implementation costs above this loop is its own overhead. Its drain is timed from the queue like
every other (:mod:`lab.run.drain`); the consumer's own clock is kept as a third view.

The consumer runs as its own process, like a worker::

    python -m lab.run.bare_pika --queue Q --count N --prefetch P --out timings.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from lab.run.harness import BASELINE_QUEUE
from shared import cli, queues, settings
from shared.contract import CONTENT_TYPE, PERSISTENT, Envelope
from shared.impl import Command


def _connect(amqp_url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(amqp_url))


def publish(amqp_url: str, count: int, queue: str = BASELINE_QUEUE) -> float:
    """Publish ``count`` persistent, confirmed zero-work messages; return the seconds taken.

    The durable queue is declared before the clock starts, as every producer's connection set-up
    is timed the same way (connection set-up is included for them too, and is a few ms).
    """
    connection = _connect(amqp_url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # the queue type of the run (MQLAB_QUEUE_TYPE), as the implementations declare theirs
        queue_type = settings.load().queue_type
        channel.queue_declare(queue=queue, durable=True, arguments=queues.arguments(queue_type))
        started = time.perf_counter()
        for _ in range(count):
            envelope = Envelope()
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=b"task",
                properties=pika.BasicProperties(
                    message_id=envelope.message_id,
                    timestamp=envelope.timestamp,
                    content_type=CONTENT_TYPE,
                    delivery_mode=PERSISTENT,
                    headers=envelope.headers(),
                ),
                mandatory=True,
            )
        return time.perf_counter() - started
    finally:
        if connection.is_open:
            connection.close()


def consume(amqp_url: str, queue: str, count: int, prefetch: int) -> tuple[float, float]:
    """Consume and ack ``count`` messages at ``prefetch``; return (first delivery, last ack).

    Times are epoch seconds, comparable with the journal's ``started_at`` / ``finished_at``.
    """
    connection = _connect(amqp_url)
    channel = connection.channel()
    if prefetch > 0:
        channel.basic_qos(prefetch_count=prefetch)
    first = last = 0.0
    seen = 0

    def on_message(
        ch: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        nonlocal first, last, seen
        if seen == 0:
            first = time.time()
        ch.basic_ack(delivery_tag=method.delivery_tag)
        seen += 1
        if seen >= count:
            last = time.time()
            ch.stop_consuming()

    channel.basic_consume(queue=queue, on_message_callback=on_message)
    channel.start_consuming()
    connection.close()
    return first, last


def consumer_command(amqp_url: str, count: int, prefetch: int, out: Path) -> Command:
    """The command that runs :func:`consume` as a separate process (like a worker), writing
    its own first-delivery and last-ack times to ``out``."""
    return Command([
        sys.executable, "-m", "lab.run.bare_pika", "--amqp-url", amqp_url,
        "--queue", BASELINE_QUEUE, "--count", str(count), "--prefetch", str(prefetch),
        "--out", str(out),
    ])  # fmt: skip


def read_timings(out: Path) -> tuple[float, float]:
    """(first delivery, last ack) as the consumer process wrote them; ``(0, 0)`` if it did not."""
    if not out.exists():
        return 0.0, 0.0
    times = json.loads(out.read_text())
    return float(times["first"]), float(times["last"])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.run.bare_pika", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", default=BASELINE_QUEUE)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    first, last = consume(args.amqp_url, args.queue, args.count, args.prefetch)
    Path(args.out).write_text(json.dumps({"first": first, "last": last}))
    return 0


if __name__ == "__main__":
    cli.run(main)
