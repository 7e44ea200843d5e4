"""Connection and queue settings for the hand-written pika implementation.

Queue names follow the RabbitMQ tutorials (``hello``, ``task_queue``), prefixed by
``MQLAB_QUEUE_PREFIX``. Connection settings come from :mod:`shared.settings` (``AMQP_URL``...).
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared import settings
from shared.errors import AccessRefused, BrokerUnreachable, QueueMismatch, queue_mismatch_message

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
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = s.connect_timeout
    params.stack_timeout = s.connect_timeout
    params.blocked_connection_timeout = 60
    params.heartbeat = s.heartbeat
    where = f"{params.host}:{params.port}"
    try:
        return pika.BlockingConnection(params)
    except (
        pika.exceptions.ProbableAuthenticationError,
        pika.exceptions.AuthenticationError,
    ) as e:
        raise AccessRefused(
            f"broker at {where} refused user '{params.credentials.username}': "
            f"wrong user name or password ({e.__class__.__name__})"
        ) from e
    except pika.exceptions.ProbableAccessDeniedError as e:
        raise AccessRefused(
            f"broker at {where} denied access to vhost '{params.virtual_host}'"
        ) from e
    except pika.exceptions.AMQPConnectionError as e:
        raise BrokerUnreachable(
            f"cannot connect to RabbitMQ at {where} ({_root_cause(e)}); is it running, and is "
            "AMQP_URL right?"
        ) from e


def _root_cause(error: BaseException) -> str:
    """The innermost reason inside pika's nested connection errors, e.g. "Connection refused"."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return "timed out"
        # pika wraps the socket error in connector errors that keep it as ``.exception``.
        inner = [
            a
            for a in (*seen.args, getattr(seen, "exception", None))
            if isinstance(a, BaseException)
        ]
        seen = inner[0] if inner else None
    return type(error).__name__


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
