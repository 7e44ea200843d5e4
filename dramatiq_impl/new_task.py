"""Tutorial 2 producer: put work messages on the durable ``dramatiq.task_queue``.

    python -m dramatiq_impl.new_task "A task...."           # one message, four units of work
    python -m dramatiq_impl.new_task "quick." --count 100   # one hundred messages

Each message is ``work.send(body)``: Dramatiq publishes it persistent (``delivery_mode=2``),
``mandatory`` and under publisher confirms (``confirm_delivery=True``), so ``enqueue`` returns
only once the broker has taken it. Dramatiq declares the queue before publishing and, if a
publish comes back unroutable because the queue was deleted meanwhile, declares it again and
republishes (``dramatiq/brokers/rabbitmq.py``, ``enqueue``): a missing queue is repaired, not
reported. Only if that keeps failing does :class:`~shared.errors.Unroutable` surface.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dramatiq import Message
from dramatiq.errors import BrokerConnectionError

from dramatiq_impl import actors
from dramatiq_impl.settings import connect, make_broker, task_queue, translate
from shared import cli


def publish(
    bodies: Sequence[str], *, amqp_url: str | None = None, queue: str | None = None
) -> list[Message]:
    """Send one ``work`` message per body; return the messages (``.message_id`` is a UUID4).

    A fresh broker (and connection) per call, so ``amqp_url`` / ``AMQP_URL`` at call time count.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, 406 on declare,
            unroutable or nacked publish.
    """
    queue = queue or task_queue()
    broker = make_broker(amqp_url)
    try:
        connect(broker, queue)
        messages = []
        for body in bodies:
            message = actors.work.message(body).copy(queue_name=queue)
            try:
                messages.append(broker.enqueue(message))
            except BrokerConnectionError as e:
                raise translate(e, broker, queue) from e
        return messages
    finally:
        broker.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m dramatiq_impl.new_task", description=__doc__)
    parser.add_argument("body", nargs="*", help="message text (default: 'Hello World!')")
    parser.add_argument("--count", type=int, default=1, help="send each body N times")
    args = parser.parse_args()
    if args.count < 0:
        parser.error("--count must be 0 or more")
    text = " ".join(args.body) or "Hello World!"
    messages = publish([text] * args.count)
    for message in messages[:10]:
        print(f" [x] Sent {text} ({message.message_id})")
    if len(messages) > 10:
        print(f" [x] ... {len(messages)} messages in all")
    return 0


if __name__ == "__main__":
    cli.run(main)
