"""Tutorial 2 producer: put work messages on the durable ``dramatiq.task_queue``.

    python -m dramatiq_impl.new_task "A task...."           # one message, four units of work
    python -m dramatiq_impl.new_task "quick." --count 100   # one hundred messages

Each message is ``work.send(body)``: Dramatiq publishes it persistent (``delivery_mode=2``),
``mandatory`` and under publisher confirms (``confirm_delivery=True``), so ``enqueue`` returns
only once the broker has taken it. Dramatiq declares the queue before publishing and, if a
publish comes back unroutable because the queue was deleted meanwhile, declares it again and
republishes (``dramatiq/brokers/rabbitmq.py``, ``enqueue``): a missing queue is repaired, not
reported. To publish to a queue *as it is* (``declare=False``), :func:`publish_as_is` makes that
same ``basic_publish`` call without the declare-and-retry loop, so a missing queue is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import pika
import pika.exceptions
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerConnectionError

from dramatiq_impl import actors
from dramatiq_impl.settings import connect, make_broker, task_queue, translate
from shared import cli, pika_errors, settings
from shared.errors import PublishRefused, Unroutable, unconfirmed


def publish_as_is(broker: RabbitmqBroker, message: Message) -> Message:
    """Publish ``message`` to its queue without declaring it, as ``RabbitmqBroker.enqueue`` does
    (persistent, ``mandatory``, on the broker's confirming channel) minus the declare-and-retry
    loop that would create a missing queue.

    Raises:
        Unroutable: no queue named ``message.queue_name`` (the broker returned the message).
        PublishRefused: the broker nacked it.
    """
    try:
        broker.channel.basic_publish(
            exchange="",
            routing_key=message.queue_name,
            body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=2),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError as e:
        raise Unroutable(
            f"message returned unroutable: no queue named '{message.queue_name}'"
        ) from e
    except pika.exceptions.NackError as e:
        raise PublishRefused(f"broker refused (nacked) a message for '{message.queue_name}'") from e
    return message


def publish(
    bodies: Sequence[str],
    *,
    amqp_url: str | None = None,
    queue: str | None = None,
    declare: bool = True,
) -> list[Message]:
    """Send one ``work`` message per body; return the messages (``.message_id`` is a UUID4).

    Parameters:
        bodies: message texts.
        amqp_url: broker URI; default ``AMQP_URL`` (read now: a fresh broker per call).
        queue: target queue; default the work queue.
        declare: let Dramatiq declare the queue (and repair it if it vanishes); ``False``
            publishes to ``queue`` as it is (:func:`publish_as_is`).

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, 406 on declare,
            unroutable or nacked publish.
    """
    queue = queue or task_queue()
    timeout = settings.load().confirm_timeout
    broker = make_broker(amqp_url)
    aborted = False
    try:
        connect(broker, queue, declare=declare)
        messages = []
        for body in bodies:
            message = actors.work.message(body).copy(queue_name=queue)
            if not declare:
                messages.append(publish_as_is(broker, message))
                continue
            try:
                # Dramatiq waits for the confirm without a deadline; MQLAB_CONFIRM_TIMEOUT.
                with pika_errors.confirm_deadline(broker.connection, timeout):
                    messages.append(broker.enqueue(message))
            except BrokerConnectionError as e:
                raise translate(e, broker, queue) from e
            except pika_errors.ConfirmTimeout as e:
                # A quorum queue without a majority: the message is not counted as sent.
                # (confirm_deadline dropped the connection; closing it again would fail.)
                aborted = True
                raise unconfirmed(timeout, len(messages), len(bodies)) from e
        return messages
    finally:
        if not aborted:
            broker.close()


def main() -> int:
    return cli.new_task_main("python -m dramatiq_impl.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
