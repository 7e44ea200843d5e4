"""Tutorial 2 producer: put work messages on the durable ``celery.task_queue``.

    python -m celery_impl.new_task "A task...."           # one message, four units of work
    python -m celery_impl.new_task "quick." --count 100   # one hundred messages

Each message is a Celery task message (``celery_impl.work``) whose task id is the contract's
message_id. It is persistent (``delivery_mode=2``), published with ``mandatory`` under publisher
confirms (``confirm_publish``), so the program fails loudly if the broker cannot route or store
it (RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms").
"""

from __future__ import annotations

from collections.abc import Sequence

import amqp.exceptions
import kombu.exceptions
from celery import Task
from kombu.messaging import Producer

from celery_impl import tasks
from celery_impl.settings import app, connect, declare_work_queue, task_queue, work_queue
from shared import cli, settings
from shared.contract import PERSISTENT, Envelope
from shared.errors import PublishRefused, Unroutable, lost_mid_publish, unconfirmed

CONNECTION_LOST = (OSError, kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError)
"""What py-amqp and kombu raise when the connection drops mid-publish."""


def publish_confirmed(
    task: Task,
    producer: Producer,
    queue: str,
    args: tuple[object, ...],
    envelope: Envelope,
    delivery_mode: int = PERSISTENT,
) -> None:
    """Publish one message for ``task`` to ``queue`` through the default exchange.

    The task id is ``envelope.message_id``; the AMQP ``message_id`` and ``timestamp`` properties
    and the precise-time header follow :mod:`shared.contract` (``content_type`` is Celery's
    ``application/json``). ``mandatory=True`` makes RabbitMQ return a message no queue takes;
    under confirms py-amqp waits for the broker's ack and raises on the return or a nack.

    Raises:
        Unroutable: no queue named ``queue`` (the broker returned the message).
        PublishRefused: the broker nacked the message.
    """
    try:
        task.apply_async(
            args=args,
            task_id=envelope.message_id,
            producer=producer,
            queue=work_queue(queue),
            declare=[],  # declared by the caller, which reports a 406 clearly
            delivery_mode=delivery_mode,
            headers=envelope.headers(),
            message_id=envelope.message_id,
            timestamp=envelope.timestamp,
            mandatory=True,
            # py-amqp waits for the confirm without a deadline otherwise; TimeoutError after it.
            confirm_timeout=settings.load().confirm_timeout,
        )
    except amqp.exceptions.MessageNacked as e:
        raise PublishRefused(f"broker refused (nacked) a message for '{queue}'") from e
    except amqp.exceptions.ChannelError as e:
        if getattr(e, "reply_code", None) == 312 or "NO_ROUTE" in str(e):
            raise Unroutable(f"message returned unroutable: no queue named '{queue}'") from e
        raise


def publish(
    bodies: Sequence[str],
    *,
    amqp_url: str | None = None,
    queue: str | None = None,
    declare: bool = True,
) -> list[Envelope]:
    """Publish one persistent ``celery_impl.work`` message per body; return their envelopes.

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
    envelopes: list[Envelope] = []
    try:
        with connect(amqp_url) as conn:
            if declare:
                declare_work_queue(conn, queue)
            with conn.channel() as channel:
                producer = app.amqp.Producer(channel)
                try:
                    for body in bodies:
                        envelope = Envelope()
                        publish_confirmed(tasks.work, producer, queue, (body,), envelope)
                        envelopes.append(envelope)
                except CONNECTION_LOST as e:
                    # Drop the socket (py-amqp: close it, forget the channels): a graceful
                    # channel.close would wait for the broker, which may never answer.
                    conn.connection.collect()
                    if isinstance(e, TimeoutError) or isinstance(e.__cause__, TimeoutError):
                        # No confirm in time (a quorum queue without a majority): not sent.
                        timeout = settings.load().confirm_timeout
                        raise unconfirmed(timeout, len(envelopes), len(bodies)) from e
                    raise
    except CONNECTION_LOST as e:
        # The broker went away mid-publish (connection reset, broken pipe, forced close); the
        # channel's and connection's own close then fail the same way.
        raise lost_mid_publish(str(e) or type(e).__name__, len(envelopes), len(bodies)) from e
    return envelopes


def main() -> int:
    return cli.new_task_main("python -m celery_impl.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
