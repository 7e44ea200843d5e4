"""pika's exceptions as mqlab's one-line errors, for the implementations that speak AMQP through
pika (``raw_pika`` directly, ``dramatiq_impl`` through Dramatiq's ``RabbitmqBroker``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

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


CONNECTION_LOST_CODES = (320,)
"""Reply codes of a connection close that means the broker went away (320 CONNECTION_FORCED:
the node shuts down, or an operator closed the connection), reported as an unreachable broker."""


def node_parameters(
    urls: Sequence[str], *, timeout: float, heartbeat: int, blocked_timeout: float = 60
) -> list[pika.URLParameters]:
    """One ``URLParameters`` per node URI, each tried once with ``timeout`` seconds for the TCP
    connect and the handshake; ``pika.BlockingConnection`` takes the list and connects to the
    first node that answers (pika docs, "Connection Parameters": a sequence of parameters).

    Raises:
        MqlabError: a URI pika cannot parse.
    """
    out = []
    for url in urls:
        try:
            params = pika.URLParameters(url)
        except (ValueError, IndexError) as e:
            raise MqlabError(
                f"AMQP_URL is not a valid AMQP URI like amqp://user:password@host:5672/vhost ({e})"
            ) from e
        params.connection_attempts = 1
        params.socket_timeout = timeout
        params.stack_timeout = timeout
        # pika closes a connection RabbitMQ blocked (memory/disk alarm) for this long.
        params.blocked_connection_timeout = blocked_timeout
        params.heartbeat = heartbeat
        out.append(params)
    return out


def connect(params: Sequence[pika.ConnectionParameters]) -> pika.BlockingConnection:
    """A blocking connection to the first node of ``params`` that answers
    (:func:`node_parameters`).

    Raises:
        MqlabError: :func:`translate`'s one-line reason (unreachable, refused login, ...).
    """
    try:
        return pika.BlockingConnection(params)
    except CONNECT_ERRORS as e:
        raise translate(e, params) from e


def watch_blocked(
    connection: pika.BlockingConnection,
    on_blocked: Callable[[str], None],
    on_unblocked: Callable[[], None],
) -> None:
    """Call ``on_blocked(reason)`` / ``on_unblocked()`` when RabbitMQ blocks or unblocks
    ``connection`` (``connection.blocked``, RabbitMQ docs, "Blocked Connection
    Notifications"); pika hands its callbacks the connection and the method frame."""

    def blocked(_connection: object, frame: object) -> None:
        on_blocked(str(getattr(getattr(frame, "method", None), "reason", "") or ""))

    connection.add_on_connection_blocked_callback(blocked)
    connection.add_on_connection_unblocked_callback(lambda _connection, _frame: on_unblocked())


class ConfirmTimeout(Exception):
    """Raised out of a blocking publish whose confirm did not arrive in time."""


@contextmanager
def confirm_deadline(connection: pika.BlockingConnection, seconds: float) -> Iterator[None]:
    """Make a blocking ``basic_publish`` inside the block raise :class:`ConfirmTimeout` when
    its publisher confirm has not arrived within ``seconds``.

    pika's ``BlockingChannel.basic_publish`` waits for the confirm without a deadline, and its
    public ``call_later`` timers only run in ``process_data_events``; a timer on the
    connection's I/O loop (``_impl._adapter_call_later``) runs while the publish waits.
    On the timeout the TCP connection is dropped without the AMQP close handshake (RabbitMQ
    would answer ``channel.close`` only once the queue settles the publish), so the caller's
    ``close()`` of the connection or channel does not hang: it finds them closed.

    Raises:
        ConfirmTimeout: no confirm in time (the TCP stream is then dropped).
        pika.exceptions.ConnectionWrongStateError: the connection had already died.
    """

    def expire() -> None:
        raise ConfirmTimeout(f"no publisher confirm within {seconds:g} s")

    impl = connection._impl
    try:
        timer = impl._adapter_call_later(seconds, expire)
    except ValueError as e:  # "Timeout closed before call": the connection died meanwhile
        raise pika.exceptions.ConnectionWrongStateError(f"connection closed ({e})") from e
    try:
        yield
    except ConfirmTimeout:
        abort(connection)
        raise
    finally:
        impl._adapter_remove_timeout(timer)


def abort(connection: pika.BlockingConnection) -> None:
    """Drop ``connection``'s TCP stream without the close handshake, and let pika see it."""
    with suppress(Exception):
        connection._impl._adapter_disconnect_stream()
    with suppress(Exception):
        connection.process_data_events(time_limit=0)


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
