"""pika's exceptions as mqlab's one-line errors, for the implementations that speak AMQP through
pika (``raw_pika`` directly, ``dramatiq_impl`` through Dramatiq's ``RabbitmqBroker``).
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from shared.errors import (
    AccessRefused,
    MqlabError,
    PublishRefused,
    QueueMismatch,
    Unroutable,
    queue_mismatch_message,
    refused,
    unreachable,
    vhost_refused,
)

CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    AMQPConnectorException,
    OSError,
)
"""What ``pika.BlockingConnection(params)`` raises when it cannot connect. Besides
``AMQPConnectionError``, pika re-raises the last attempt's own error unwrapped
(``BlockingConnection._reap_last_connection_workflow_error``): ``AMQPConnectorStackTimeout`` when
the peer never answers the handshake, ``ssl.SSLError`` for TLS against a plain port, and
``socket.gaierror`` for a host name that does not resolve."""


def translate(
    error: BaseException, params: pika.ConnectionParameters, queue: str = "?", doing: str = "?"
) -> MqlabError:
    """The :class:`~shared.errors.MqlabError` that tells the user what ``error`` means.

    Parameters:
        error: a pika exception (``AMQPConnectionError`` and subclasses, ``ChannelClosedByBroker``,
            ``UnroutableError``, ``NackError``); anything else counts as an unreachable broker.
        params: the connection's parameters (host, port, user, vhost for the message).
        queue: the queue concerned, for 406, unroutable and nack messages.
        doing: ``declare``, ``publish`` or ``consume``: names the permission a 403 lacks.
    """
    where = f"{params.host}:{params.port}"
    if isinstance(
        error, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)
    ):
        user = getattr(params.credentials, "username", "?")
        return AccessRefused(
            f"broker at {where} refused user '{user}': wrong user name or password "
            f"({error.__class__.__name__})"
        )
    user = str(getattr(params.credentials, "username", "?"))
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return AccessRefused(vhost_refused(user, params.virtual_host, f"broker at {where}"))
    if isinstance(error, pika.exceptions.ChannelClosedByBroker) and error.reply_code == 406:
        return QueueMismatch(queue_mismatch_message(queue, error.reply_text))
    if isinstance(
        error, (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker)
    ) and error.reply_code in (402, 403, 404, 530):
        return refused(error.reply_code, error.reply_text, user, params.virtual_host, doing)
    if isinstance(error, pika.exceptions.UnroutableError):
        return Unroutable(f"message returned unroutable: no queue named '{queue}'")
    if isinstance(error, pika.exceptions.NackError):
        return PublishRefused(f"broker refused (nacked) a message for '{queue}'")
    return unreachable(where, root_cause(error))


def root_cause(error: BaseException) -> str:
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
