"""pika's exceptions as mqlab's one-line errors, for the implementations that speak AMQP through
pika (``raw_pika`` directly, ``dramatiq_impl`` through Dramatiq's ``RabbitmqBroker``). The
connection itself is :mod:`shared.pika_connection`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pika
import pika.exceptions

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

CONNECTION_LOST_CODES = (320,)
"""Reply codes of a connection close that means the broker went away (320 CONNECTION_FORCED:
the node shuts down, or an operator closed the connection), reported as an unreachable broker."""


def translate(
    error: BaseException,
    params: pika.ConnectionParameters | Sequence[pika.ConnectionParameters],
    queue: str = "?",
    doing: str = "?",
) -> MqlabError:
    """The :class:`~shared.errors.MqlabError` that tells the user what ``error`` means.

    Parameters:
        error: a pika exception (``AMQPConnectionError`` and subclasses, ``ChannelClosedByBroker``,
            ``UnroutableError``, ``NackError``); anything else counts as an unreachable broker.
        params: the connection's parameters (host, port, user, vhost for the message), or one
            per node of a cluster.
        queue: the queue concerned, for 406, unroutable and nack messages.
        doing: ``declare``, ``publish`` or ``consume``: names the permission a 403 lacks.
    """
    nodes = list(params) if isinstance(params, Sequence) else [params]
    where = ", ".join(f"{p.host}:{p.port}" for p in nodes)
    first = nodes[0]
    if isinstance(
        error, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)
    ):
        user = getattr(first.credentials, "username", "?")
        return AccessRefused(
            f"broker at {where} refused user '{user}': wrong user name or password "
            f"({error.__class__.__name__})"
        )
    user = str(getattr(first.credentials, "username", "?"))
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return AccessRefused(vhost_refused(user, first.virtual_host, f"broker at {where}"))
    if isinstance(error, pika.exceptions.ChannelClosedByBroker) and error.reply_code == 406:
        return QueueMismatch(queue_mismatch_message(queue, error.reply_text))
    if isinstance(
        error, (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker)
    ) and error.reply_code in (402, 403, 404, 530):
        return refused(error.reply_code, error.reply_text, user, first.virtual_host, doing)
    if (
        isinstance(error, pika.exceptions.ConnectionClosedByBroker)
        and error.reply_code not in CONNECTION_LOST_CODES
    ):
        # e.g. 541 INTERNAL_ERROR "Cannot declare quorum queue ... cluster_not_formed": the
        # broker answered and said why, so the reason is its reply, not an unreachable broker.
        while_doing = "" if doing == "?" else f" while trying to {doing}"
        return MqlabError(
            f"RabbitMQ closed the connection{while_doing} ({error.reply_code} {error.reply_text})"
        )
    if isinstance(error, pika.exceptions.UnroutableError):
        return Unroutable(f"message returned unroutable: no queue named '{queue}'")
    if isinstance(error, pika.exceptions.NackError):
        return PublishRefused(f"broker refused (nacked) a message for '{queue}'")
    return unreachable(where, root_cause(error))


def root_cause(error: BaseException) -> str:
    """The innermost reason inside pika's nested connection errors, e.g. "Connection refused",
    or the broker's reply when it closed the connection ("320 CONNECTION_FORCED - ...")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, pika.exceptions.ConnectionClosedByBroker):
            return f"{seen.reply_code} {seen.reply_text}"  # the broker's own reason
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
