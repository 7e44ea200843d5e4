"""The hand-written pika implementation's broker connection and queues: connect, declare.

Queue names follow the RabbitMQ tutorials (``hello``, ``task_queue``), prefixed by
``MQLAB_QUEUE_PREFIX``. Connection settings come from :mod:`shared.settings` (``AMQP_URL``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared import pika_connection, pika_errors, policy, queues, settings
from shared.errors import QueueMismatch, queue_mismatch_message

HELLO_QUEUE = "hello"
TASK_QUEUE = "task_queue"


def hello_queue() -> str:
    """The hello-world queue's name."""
    return settings.load().queue(HELLO_QUEUE)


def task_queue() -> str:
    """The work queue's name."""
    return settings.load().queue(TASK_QUEUE)


def connect(amqp_url: str | None = None) -> pika_connection.Connected:
    """Open a blocking connection, failing fast with a clear error; return it with the
    parameters it was opened with (for error messages).

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
    params = pika_connection.node_parameters(
        settings.amqp_urls(amqp_url or s.amqp_url),
        timeout=s.connect_timeout,
        heartbeat=s.heartbeat,
        blocked_timeout=s.blocked_timeout,
    )
    return pika_connection.connect(params)


def declare_queue(
    channel: BlockingChannel,
    queue: str,
    arguments: dict[str, Any],
    params: Sequence[pika.ConnectionParameters],
    *,
    durable: bool = True,
) -> None:
    """Declare a queue; durable by default (tutorial 2: ``durable=True`` survives a restart).
    ``params`` are the connection's (:func:`connect`), named in errors.

    Raises:
        QueueMismatch: the queue exists with other arguments, e.g. non-durable or of another
            type (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission on it (403), or another refusal.
    """
    try:
        channel.queue_declare(queue=queue, durable=durable, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 406:
            raise QueueMismatch(queue_mismatch_message(queue, e.reply_text)) from e
        raise pika_errors.translate(e, params, queue, "declare") from e


def declare_task_queue(
    channel: BlockingChannel, queue: str, params: Sequence[pika.ConnectionParameters]
) -> None:
    """Declare the work queue and its dead-letter queue, of type ``MQLAB_QUEUE_TYPE``.

    The work queue dead-letters rejected messages (and, on quorum queues, those past
    ``MQLAB_DELIVERY_LIMIT`` deliveries) to ``<queue>.dead`` (:mod:`shared.queues`). A quorum
    work queue gets that from the policy ``mqlab-<queue>`` where the management API lets it be
    set, and is declared with the RabbitMQ tutorial's arguments, so the tutorial's own programs
    can share it; else from x-arguments (:mod:`shared.policy`).

    Raises:
        QueueMismatch: either queue exists with other arguments (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission (403).
    """
    s = settings.load()
    dead = queues.dead_letter_queue(queue)
    declare_queue(channel, dead, queues.arguments(s.queue_type), params)
    if s.queue_type == "quorum" and policy.dead_letter_by_policy(
        s.amqp_urls[0], queue, s.delivery_limit
    ):
        # The tutorial's declaration (durable, x-queue-type quorum), so its programs can share
        # the queue; the policy dead-letters and bounds deliveries (shared.policy).
        declare_queue(channel, queue, queues.arguments(s.queue_type), params)
        return
    arguments = queues.work_queue_arguments(queue, s.queue_type, s.delivery_limit)
    declare_queue(channel, queue, arguments, params)


def declare_hello_queue(
    channel: BlockingChannel, queue: str, params: Sequence[pika.ConnectionParameters]
) -> None:
    """Declare the hello queue: tutorial 1's plain (non-durable) classic queue, or a quorum
    queue (always durable) with ``MQLAB_QUEUE_TYPE=quorum``.

    Raises:
        QueueMismatch: it exists with other arguments (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission (403).
    """
    queue_type = settings.load().queue_type
    arguments = queues.arguments(queue_type)
    declare_queue(channel, queue, arguments, params, durable=queue_type == "quorum")
