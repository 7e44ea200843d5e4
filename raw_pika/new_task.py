"""Tutorial 2 producer: put work messages on the durable ``task_queue``.

    python -m raw_pika.new_task "A task...."           # one message, four units of work
    python -m raw_pika.new_task "quick." --count 100   # one hundred messages

Every message is persistent (``delivery_mode=2``) and published with ``mandatory`` under
publisher confirms, so the program fails loudly if the broker cannot route or store it
(RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms").
"""

from __future__ import annotations

from collections.abc import Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from raw_pika.settings import connect, declare_task_queue, task_queue
from shared import cli, pika_errors, settings
from shared.contract import CONTENT_TYPE, PERSISTENT, Envelope
from shared.errors import PublishRefused, Unroutable, lost_mid_publish, unconfirmed


def properties(envelope: Envelope, delivery_mode: int = PERSISTENT) -> pika.BasicProperties:
    """The AMQP properties of the message contract (:mod:`shared.contract`)."""
    return pika.BasicProperties(
        message_id=envelope.message_id,
        timestamp=envelope.timestamp,
        content_type=CONTENT_TYPE,
        delivery_mode=delivery_mode,
        headers=envelope.headers(),
    )


def publish_confirmed(
    channel: BlockingChannel, queue: str, body: str, props: pika.BasicProperties
) -> None:
    """Publish ``body`` to ``queue`` through the default exchange with ``mandatory=True``.

    With confirms on (``channel.confirm_delivery()``), pika's blocking channel waits for the
    broker's ack (at most ``MQLAB_CONFIRM_TIMEOUT`` seconds) and raises if the message came
    back or was nacked.

    Raises:
        Unroutable: no queue named ``queue`` (the broker returned the message).
        PublishRefused: the broker nacked the message.
        pika_errors.ConfirmTimeout: no confirm in time (the caller reports it).
    """
    try:
        with pika_errors.confirm_deadline(channel.connection, settings.load().confirm_timeout):
            channel.basic_publish(
                exchange="", routing_key=queue, body=body.encode(), properties=props, mandatory=True
            )
    except pika.exceptions.UnroutableError as e:
        raise Unroutable(f"message returned unroutable: no queue named '{queue}'") from e
    except pika.exceptions.NackError as e:
        raise PublishRefused(f"broker refused (nacked) a message for '{queue}'") from e


def publish(
    bodies: Sequence[str],
    *,
    amqp_url: str | None = None,
    queue: str | None = None,
    declare: bool = True,
) -> list[Envelope]:
    """Publish one persistent message per body; return their envelopes.

    Parameters:
        bodies: message texts.
        amqp_url: broker URI; default ``AMQP_URL``.
        queue: target queue; default the work queue.
        declare: declare the durable queue first (as the tutorial does).

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, 406 on declare,
            unroutable or nacked publish.
    """
    queue = queue or task_queue()
    connection = connect(amqp_url)
    envelopes: list[Envelope] = []
    aborted = False
    try:
        channel = connection.channel()
        if settings.load().confirms:
            channel.confirm_delivery()
        if declare:
            declare_task_queue(channel, queue)
        for body in bodies:
            envelope = Envelope()
            publish_confirmed(channel, queue, body, properties(envelope))
            envelopes.append(envelope)
        return envelopes
    except pika_errors.ConfirmTimeout as e:
        # A quorum queue without a majority: the message may yet be stored, but is not sent.
        # (confirm_deadline dropped the connection; closing it again would fail.)
        aborted = True
        raise unconfirmed(settings.load().confirm_timeout, len(envelopes), len(bodies)) from e
    except pika.exceptions.AMQPConnectionError as e:
        # The broker went away mid-publish (StreamLostError, ConnectionClosedByBroker).
        raise lost_mid_publish(pika_errors.root_cause(e), len(envelopes), len(bodies)) from e
    finally:
        if connection.is_open and not aborted:
            connection.close()


def main() -> int:
    return cli.new_task_main("python -m raw_pika.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
