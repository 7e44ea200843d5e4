"""The pika connection plumbing shared by the implementations that speak AMQP through pika
(``raw_pika`` directly, ``dramatiq_impl`` through Dramatiq's ``RabbitmqBroker``, and the lab's
purge): one parameter set per node, a connection that fails fast with a one-line error
(:mod:`shared.pika_errors`), ``connection.blocked`` callbacks, and a deadline on a publisher
confirm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import NamedTuple

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from shared.errors import BadSetting, MqlabError
from shared.pika_errors import translate
from shared.producer import Failure

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


LOST: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,  # StreamLostError, ConnectionClosedByBroker, ...
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
)
"""What pika raises on a connection that died under us (broker restart, missed heartbeats)."""


class Connected(NamedTuple):
    """An open connection and the parameters it was opened with (one per node of a cluster),
    which name the host, user and vhost in error messages.

    Attributes:
        connection: the open blocking connection.
        params: every node's parameters, in ``AMQP_URL`` order.
        node: the parameters of the node that answered (``None`` where the caller built the
            connection itself), so nothing reads pika's private ``connection._impl.params``.
    """

    connection: pika.BlockingConnection
    params: list[pika.ConnectionParameters]
    node: pika.ConnectionParameters | None = None


def node_parameters(
    urls: Sequence[str], *, timeout: float, heartbeat: int, blocked_timeout: float = 60
) -> list[pika.URLParameters]:
    """One ``URLParameters`` per node URI, each tried once with ``timeout`` seconds for the TCP
    connect and the handshake; ``pika.BlockingConnection`` takes the list and connects to the
    first node that answers (pika docs, "Connection Parameters": a sequence of parameters).

    Raises:
        BadSetting: a URI pika cannot parse.
    """
    out = []
    for url in urls:
        try:
            params = pika.URLParameters(url)
        except (ValueError, IndexError) as e:
            raise BadSetting(
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


def connect(params: Sequence[pika.ConnectionParameters]) -> Connected:
    """A blocking connection to the first node of ``params`` that answers
    (:func:`node_parameters`), tried one after another in order, with those parameters and
    the one that answered.

    Raises:
        MqlabError: :func:`~shared.pika_errors.translate`'s one-line reason (unreachable,
            refused login, ...).
    """
    failure: BaseException | None = None
    for node in params:  # in order, as pika does with a list, so we know which one answered
        try:
            return Connected(pika.BlockingConnection(node), list(params), node)
        except CONNECT_ERRORS as e:
            failure = e  # pika, given the list, raises its last attempt's error too
    assert failure is not None, "connect() needs at least one node"
    raise translate(failure, params) from failure


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


def classify(
    error: Exception, params: Sequence[pika.ConnectionParameters], queue: str
) -> Failure | MqlabError | None:
    """What a pika error raised out of a producer's publish means
    (:meth:`shared.producer.BaseProducer._classify`, for the pika-based producers).

    ``ConnectionBlockedTimeout``: blocked past pika's ``blocked_connection_timeout``;
    :class:`ConfirmTimeout`: unconfirmed; ``ChannelClosedByBroker``: the broker's refusal
    (:func:`~shared.pika_errors.translate`); :data:`LOST`: a lost connection.
    """
    if isinstance(error, pika.exceptions.ConnectionBlockedTimeout):
        return Failure.BLOCKED
    if isinstance(error, ConfirmTimeout):
        return Failure.UNCONFIRMED
    if isinstance(error, pika.exceptions.ChannelClosedByBroker):
        return translate(error, params, queue, "publish")
    if isinstance(error, LOST):
        return Failure.LOST
    return None
