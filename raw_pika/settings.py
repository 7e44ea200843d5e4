"""Connection and queue settings for the hand-written pika implementation.

Queue names follow the RabbitMQ tutorials (``hello``, ``task_queue``), prefixed by
``MQLAB_QUEUE_PREFIX``. Connection settings come from :mod:`shared.settings` (``AMQP_URL``...).
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared import pika_errors, settings
from shared.errors import MqlabError, QueueMismatch, queue_mismatch_message

HELLO_QUEUE = "hello"
TASK_QUEUE = "task_queue"


def hello_queue() -> str:
    """The hello-world queue's name."""
    return settings.load().queue(HELLO_QUEUE)


def task_queue() -> str:
    """The work queue's name."""
    return settings.load().queue(TASK_QUEUE)


def connect(amqp_url: str | None = None) -> pika.BlockingConnection:
    """Open a blocking connection, failing fast with a clear error.

    Parameters:
        amqp_url: broker URI; default ``AMQP_URL``.

    Raises:
        BrokerUnreachable: refused, timed out or not an AMQP server (one attempt,
            ``MQLAB_CONNECT_TIMEOUT`` seconds).
        AccessRefused: wrong user name or password, or no access to the vhost.
    """
    s = settings.load()
    url = amqp_url or s.amqp_url
    try:
        params = pika.URLParameters(url)
    except (ValueError, IndexError) as e:
        raise MqlabError(
            f"AMQP_URL is not a valid AMQP URI like amqp://user:password@host:5672/vhost ({e})"
        ) from e
    params.connection_attempts = 1
    params.socket_timeout = s.connect_timeout
    params.stack_timeout = s.connect_timeout
    # pika closes a connection RabbitMQ blocked (memory/disk alarm) for this long.
    params.blocked_connection_timeout = s.blocked_timeout
    params.heartbeat = s.heartbeat
    try:
        return pika.BlockingConnection(params)
    except pika_errors.CONNECT_ERRORS as e:
        raise pika_errors.translate(e, params) from e


def declare_task_queue(channel: BlockingChannel, queue: str) -> None:
    """Declare the durable work queue (tutorial 2: ``durable=True`` survives a restart).

    Raises:
        QueueMismatch: the queue exists with other arguments, e.g. non-durable
            (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission on it (403), or another refusal.
    """
    try:
        channel.queue_declare(queue=queue, durable=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 406:
            raise QueueMismatch(queue_mismatch_message(queue, e.reply_text)) from e
        raise pika_errors.translate(e, channel.connection._impl.params, queue, "declare") from e
