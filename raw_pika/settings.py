"""Connection and queue settings for the hand-written pika implementation.

Queue names follow the RabbitMQ tutorials (``hello``, ``task_queue``), prefixed by
``MQLAB_QUEUE_PREFIX``. Connection settings come from :mod:`shared.settings` (``AMQP_URL``...).
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared import pika_errors, settings
from shared.errors import QueueMismatch, queue_mismatch_message

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
        amqp_url: broker URI, or several nodes' URIs joined by ``;`` (connects to the first
            that answers); default ``AMQP_URL``.

    Raises:
        BrokerUnreachable: refused, timed out or not an AMQP server (one attempt per node,
            ``MQLAB_CONNECT_TIMEOUT`` seconds each).
        AccessRefused: wrong user name or password, or no access to the vhost.
    """
    s = settings.load()
    # Several nodes (AMQP_URL="url1;url2;url3"): pika tries each in turn, once.
    params = pika_errors.node_parameters(
        settings.amqp_urls(amqp_url or s.amqp_url),
        timeout=s.connect_timeout,
        heartbeat=s.heartbeat,
    )
    try:
        return pika.BlockingConnection(params)
    except pika_errors.CONNECT_ERRORS as e:
        raise pika_errors.translate(e, params) from e


def declare_task_queue(channel: BlockingChannel, queue: str) -> None:
    """Declare the durable work queue (tutorial 2: ``durable=True`` survives a restart).

    Raises:
        QueueMismatch: the queue exists with other arguments, e.g. non-durable
            (406 PRECONDITION_FAILED).
    """
    try:
        channel.queue_declare(queue=queue, durable=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 406:
            raise QueueMismatch(queue_mismatch_message(queue, e.reply_text)) from e
        raise
