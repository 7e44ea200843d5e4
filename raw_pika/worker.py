"""Tutorial 2 worker: take work from ``task_queue``, ack each message when its work is done.

    python -m raw_pika.worker                      # one slot, prefetch 1: fair dispatch
    python -m raw_pika.worker --concurrency 4      # four tasks at once, prefetch 4
    python -m raw_pika.worker --prefetch 0         # unlimited: plain round-robin
    python -m raw_pika.worker --slowdown 4 --name slow

It reads in the tutorial's order: connect, declare the durable queue, ``basic_qos``, the
callback, consume.

* The message is acknowledged only after the work is done, so a worker that dies mid-task
  leaves it unacked and RabbitMQ redelivers it to another consumer, flagged ``redelivered``.
* ``basic_qos(prefetch_count=1)`` makes RabbitMQ give a worker a new message only once it has
  acked the previous one (fair dispatch, RabbitMQ tutorial 2). With ``--concurrency N`` the
  worker runs N tasks at once on N threads and holds ``N x --prefetch`` messages.
* The work runs on those threads, not on the connection's: heartbeats keep going during a task
  longer than the heartbeat timeout, and the ack goes back to the connection's thread
  (:mod:`raw_pika.settlements`). :mod:`raw_pika.consumer` holds the warm shutdown on SIGTERM,
  the reconnect after a broker restart, the consumer-cancel and the ``consumer_timeout``
  handling.
* A message it cannot process (a body that is not UTF-8; a task that raised on each of its
  ``MAX_ATTEMPTS`` runs) is rejected without requeue, so RabbitMQ parks it in
  ``task_queue.dead``, and the worker goes on (:mod:`shared.poison`): no exception of a message
  ends the worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel

from raw_pika.broker import connect, declare_task_queue, task_queue
from raw_pika.consumer import Consumer
from raw_pika.settlements import Delivery
from shared import cli, poison, queues, settings, tasks
from shared.contract import published_at_from
from shared.journal import JournalWriter


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

    connected = connect()  # the first connection fails fast with a clear error
    node = connected.node or connected.params[0]  # the node that answered, of AMQP_URL's
    print(
        f" [*] {args.name} connected to {settings.node_address(node.host, node.port)}", flush=True
    )
    cli.buffer_stdout()  # the per-message lines: cheap, flushed by the consumer

    def setup(channel: BlockingChannel, params: Sequence[pika.ConnectionParameters]) -> None:
        declare_task_queue(channel, queue, params)  # durable=True
        if args.prefetch > 0:
            channel.basic_qos(prefetch_count=cli.total_prefetch(args.prefetch, args.concurrency))

    def callback(delivery: Delivery) -> None:
        """Run one message's task on a slot thread, then ack it: the one place a message meets
        its task. A processing fault parks the message; it never ends the worker."""
        try:
            process(delivery)
        except Exception as e:
            why = poison.describe(e)
            parked_in = None if args.auto_ack else queues.dead_letter_queue(queue)
            delivery.reject(requeue=False)  # dead-lettered to <queue>.dead
            poison.report(delivery.props.message_id, parked_in, why)  # once rejected
            return
        delivery.ack()

    def process(delivery: Delivery) -> None:
        """Run one message's task; raise whatever should park it (:mod:`shared.poison`)."""
        props = delivery.props
        try:
            text = delivery.body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise poison.Unprocessable("the body is not UTF-8 text") from e

        def once() -> None:
            with journal.run(
                message_id=props.message_id or "",
                task="work",
                redelivered=bool(delivery.method.redelivered),
                published_at=published_at_from(props.headers, props.timestamp),
            ):
                tasks.work(text, s.dot_seconds, args.slowdown)

        poison.run_attempts(once)  # a task that raises: MAX_ATTEMPTS executions, then parked

    consumer = Consumer(
        connect,
        setup,
        callback,
        queue=queue,
        slots=args.concurrency,
        auto_ack=args.auto_ack,
        name=args.name,
        reconnect_seconds=s.reconnect_seconds,
        window=cli.total_prefetch(args.prefetch, args.concurrency),
    )
    return consumer.run(connected)


if __name__ == "__main__":
    cli.run(main)
