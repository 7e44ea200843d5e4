"""Tutorial 2 worker: take work from ``task_queue``, one message at a time, ack when done.

    python -m raw_pika.worker                      # prefetch 1: fair dispatch
    python -m raw_pika.worker --prefetch 0         # unlimited: plain round-robin
    python -m raw_pika.worker --slowdown 4 --name slow

* The message is acknowledged only after the work is done, so a worker that dies mid-task
  leaves it unacked and RabbitMQ redelivers it to another consumer, flagged ``redelivered``.
* ``basic_qos(prefetch_count=1)`` makes RabbitMQ give a worker a new message only once it has
  acked the previous one (fair dispatch, RabbitMQ tutorial 2).
* Ctrl+C or SIGTERM: the message in hand is finished and acked, then the connection closes;
  messages prefetched but not started go back to the queue.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from raw_pika.settings import connect, declare_task_queue, task_queue
from shared import cli, pika_errors, settings, tasks
from shared.contract import published_at_from
from shared.errors import BrokerUnreachable, MqlabError
from shared.journal import JournalWriter

MAX_PREFETCH = 65535
"""``basic.qos`` prefetch-count is a 16-bit field (AMQP 0-9-1 spec, ``basic.qos``)."""


def main() -> int:
    s = settings.load()
    parser = argparse.ArgumentParser(prog="python -m raw_pika.worker", description=__doc__)
    parser.add_argument("--prefetch", type=int, default=s.prefetch, help="0 = unlimited")
    parser.add_argument("--slowdown", type=float, default=s.slowdown)
    parser.add_argument("--name", default=s.worker_name)
    parser.add_argument(
        "--auto-ack",
        action="store_true",
        help="ack on delivery like tutorial 1 (loses the message in hand if the worker dies)",
    )
    args = parser.parse_args()
    if not 0 <= args.prefetch <= MAX_PREFETCH:
        parser.error(f"--prefetch must be 0 (unlimited) to {MAX_PREFETCH}, not {args.prefetch}")
    journal = JournalWriter(s.journal, impl="pika", worker=args.name)

    connection = connect()
    channel = connection.channel()
    queue = task_queue()
    declare_task_queue(channel, queue)
    if args.prefetch > 0:
        channel.basic_qos(prefetch_count=args.prefetch)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def callback(
        ch: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        if stopping:
            return  # not started: closing the channel requeues it
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            print(
                f" [!] Rejected a body that is not UTF-8 text ({props.message_id})",
                file=sys.stderr,
                flush=True,
            )
            if not args.auto_ack:
                ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            return
        print(f" [x] Received {text}", flush=True)
        with journal.run(
            message_id=props.message_id or "",
            task="work",
            redelivered=bool(method.redelivered),
            published_at=published_at_from(props.headers, props.timestamp),
        ):
            tasks.work(text, s.dot_seconds, args.slowdown)
        print(" [x] Done", flush=True)
        if not args.auto_ack:
            ch.basic_ack(delivery_tag=method.delivery_tag)

    cancelled = False

    def on_cancel(method: object) -> None:
        # The broker cancels the consumer when the queue is deleted (RabbitMQ docs, "Consumer
        # Cancel Notification"); without a consumer this worker would idle forever.
        nonlocal cancelled
        cancelled = True

    channel.add_on_cancel_callback(on_cancel)
    channel.basic_consume(queue=queue, on_message_callback=callback, auto_ack=args.auto_ack)
    print(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C", flush=True)
    try:
        while not stopping and not cancelled:
            connection.process_data_events(time_limit=0.2)
    except pika.exceptions.AMQPConnectionError as e:
        raise BrokerUnreachable(
            f"lost the connection to RabbitMQ ({pika_errors.root_cause(e)}); the unacked "
            "message, if any, goes back to the queue. Restart the worker."
        ) from e
    except pika.exceptions.ChannelClosedByBroker as e:
        # e.g. 406 "delivery acknowledgement timed out": a task outlasted the broker's
        # consumer_timeout (RabbitMQ docs, "Consumer Acknowledgements": delivery ack timeout).
        raise MqlabError(
            f"RabbitMQ closed the channel ({e.reply_code} {e.reply_text}); the unacked "
            "message goes back to the queue. Restart the worker."
        ) from e
    if cancelled:
        connection.close()
        raise MqlabError(
            f"RabbitMQ cancelled this worker's consumer: queue '{queue}' was deleted. "
            "Restart the worker."
        )
    connection.close()
    print(f" [*] {args.name} stopped", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
