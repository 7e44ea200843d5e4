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
* If the connection drops (the broker restarts), the worker reconnects for up to
  ``MQLAB_RECONNECT_SECONDS`` (pika leaves that to us: pika docs, "Connection recovery"); the
  message in hand could not be acked, so RabbitMQ delivers it again.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from raw_pika.settings import connect, declare_task_queue, task_queue
from shared import cli, pika_errors, settings, tasks
from shared.contract import published_at_from
from shared.errors import BrokerUnreachable, MqlabError
from shared.journal import JournalWriter
from shared.pika_errors import root_cause


def main() -> int:
    s = settings.load()
    parser = cli.worker_parser("python -m raw_pika.worker", __doc__)
    parser.add_argument(
        "--auto-ack",
        action="store_true",
        help="ack on delivery like tutorial 1 (loses the message in hand if the worker dies)",
    )
    args = cli.parse_worker_args(parser)
    journal = JournalWriter(s.journal, impl="pika", worker=args.name)
    queue = task_queue()

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
        print(f" [x] Received {text}")
        with journal.run(
            message_id=props.message_id or "",
            task="work",
            redelivered=bool(method.redelivered),
            published_at=published_at_from(props.headers, props.timestamp),
        ):
            tasks.work(text, s.dot_seconds, args.slowdown)
        print(" [x] Done")
        if not args.auto_ack:
            ch.basic_ack(delivery_tag=method.delivery_tag)

    def consume(connection: pika.BlockingConnection) -> bool:
        """Consume until asked to stop (True) or until RabbitMQ cancels the consumer (False)."""
        cancelled = False

        def on_cancel(method: object) -> None:
            # The broker cancels the consumer when the queue is deleted (RabbitMQ docs,
            # "Consumer Cancel Notification"); without a consumer this worker would idle.
            nonlocal cancelled
            cancelled = True

        channel = connection.channel()
        declare_task_queue(channel, queue)
        if args.prefetch > 0:
            channel.basic_qos(prefetch_count=args.prefetch)
        channel.add_on_cancel_callback(on_cancel)
        channel.basic_consume(queue=queue, on_message_callback=callback, auto_ack=args.auto_ack)
        print(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C")
        while not stopping and not cancelled:
            connection.process_data_events(time_limit=0.2)
        if cancelled:
            channel.close()
        return not cancelled

    connection = connect()  # the first connection fails fast with a clear error
    while True:
        try:
            if consume(connection):
                connection.close()
                print(f" [*] {args.name} stopped")
                return 0
            print(f" [!] {args.name}: consumer cancelled (queue deleted?); declaring it again")
        except pika.exceptions.AMQPConnectionError as e:  # lost: broker restarted, network
            if stopping:
                return 0
            print(f" [!] {args.name} lost its connection ({root_cause(e)}); reconnecting")
            connection = reconnect(s.reconnect_seconds, lambda: stopping)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 406:  # 403 ACCESS_REFUSED on basic.consume: no read permission
                params = connection._impl.params
                raise pika_errors.translate(e, params, queue, "consume") from e
            # e.g. 406 "delivery acknowledgement timed out": a task outlasted the broker's
            # consumer_timeout (RabbitMQ docs, "Consumer Acknowledgements": delivery ack timeout).
            raise MqlabError(
                f"RabbitMQ closed the channel ({e.reply_code} {e.reply_text}); the unacked "
                "message goes back to the queue"
            ) from e


def reconnect(within: float, stopping: Callable[[], bool]) -> pika.BlockingConnection:
    """Try to connect every half second for ``within`` seconds.

    Raises:
        BrokerUnreachable: still no connection at the deadline.
        KeyboardInterrupt: asked to stop meanwhile.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return connect()
        except BrokerUnreachable as e:
            if time.monotonic() > deadline:
                raise BrokerUnreachable(f"{e} (gave up reconnecting after {within:g} s)") from e
        if stopping():
            raise KeyboardInterrupt
        time.sleep(0.5)


if __name__ == "__main__":
    cli.run(main)
