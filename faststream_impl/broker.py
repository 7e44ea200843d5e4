"""The FastStream broker: connection, node-list failover, queues and error translation.

FastStream's ``RabbitBroker`` connects with aio-pika's ``connect_robust``: a
``RobustConnection`` that reconnects after a broker restart every ``reconnect_interval``
seconds, and restores its channels, their ``basic.qos``, the queues declared on them and their
consumers (aio-pika docs, "Connection" and ``aio_pika/robust_connection.py``). It reconnects to
one URL only (aio-pika issue #141, open since 2018), so :class:`NodeListConnection` goes round a
cluster's node list (``AMQP_URL="url1;url2;url3"``) on every (re)connection attempt.

Queue names follow the RabbitMQ tutorials (``hello``, ``task_queue``) with a ``faststream.``
prefix so the four implementations never share a queue, plus ``MQLAB_QUEUE_PREFIX``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

import aiormq.exceptions
from aio_pika import RobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from faststream import FastStream
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue
from yarl import URL

from shared import queues, settings
from shared.errors import (
    AccessRefused,
    MqlabError,
    QueueMismatch,
    queue_mismatch_message,
    refused,
    unreachable,
    vhost_refused,
)

HELLO_QUEUE = "faststream.hello"
TASK_QUEUE = "faststream.task_queue"


class BlockedWatch(logging.Filter):
    """Hears RabbitMQ's ``connection.blocked`` / ``connection.unblocked`` (a memory or disk
    alarm: RabbitMQ docs, "Blocked Connection Notifications") for the producers, and keeps
    aiormq's log lines off stderr.

    aiormq handles both frames itself, holding back every publish while blocked, and tells no
    one but its log (``aiormq/connection.py``: "Connection %r was blocked by: %r"); this filter
    on the ``aiormq.connection`` logger passes the reason to the callback registered for that
    connection (:meth:`watch`). The programs say what went wrong in their own one line, so no
    aiormq record is printed (it would repeat "Error when creating transport" before it).
    """

    BLOCKED = "Connection %r was blocked by: %r"
    UNBLOCKED = "Connection %r was unblocked"

    def __init__(self) -> None:
        super().__init__()
        self._listeners: weakref.WeakKeyDictionary[object, Callable[[str | None], None]] = (
            weakref.WeakKeyDictionary()
        )

    def watch(self, broker: RabbitBroker, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(reason)`` when RabbitMQ blocks ``broker``'s connection, and
        ``listener(None)`` when it unblocks it."""
        connection = broker._connection  # FastStream's RobustConnection (its Context name)
        if connection is not None and connection.transport is not None:
            self._listeners[connection.transport.connection] = listener

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg in (self.BLOCKED, self.UNBLOCKED) and args:
            listener = self._listeners.get(args[0])
            if listener is not None:
                listener(str(args[1]) if record.msg == self.BLOCKED else None)
        return False


BLOCKED_WATCH = BlockedWatch()
logging.getLogger("aiormq.connection").addFilter(BLOCKED_WATCH)
logging.getLogger("aiormq.connection").setLevel(logging.WARNING)  # the filter sees WARNING up
logging.getLogger("aiormq").setLevel(logging.CRITICAL)


RECONNECT_INTERVAL = 1.0
"""Seconds between reconnection attempts (FastStream's ``reconnect_interval``, default 5 s):
each attempt tries every node of the list once."""


def hello_queue() -> str:
    """The hello-world queue's name."""
    return settings.load().queue(HELLO_QUEUE)


def task_queue() -> str:
    """The work queue's name."""
    return settings.load().queue(TASK_QUEUE)


def declared(
    name: str, arguments: dict[str, Any], *, durable: bool = True, timeout: float | None = None
) -> RabbitQueue:
    """A ``RabbitQueue`` declared with exactly ``arguments`` (:mod:`shared.queues`).

    FastStream's own ``RabbitQueue(queue_type=QueueType.QUORUM)`` would add ``x-queue-type``
    itself, but it also adds ``x-queue-type: classic`` to every classic queue, which the other
    implementations declare without it; the arguments are therefore set as mqlab declares
    them everywhere. ``timeout`` bounds the wait for ``queue.declare-ok`` in seconds (``None``:
    no bound).
    """
    queue = RabbitQueue(name, durable=durable, timeout=timeout)
    queue.arguments = cast(Any, arguments)
    return queue


def work_queue(name: str, timeout: float | None = None) -> RabbitQueue:
    """The durable work queue of type ``MQLAB_QUEUE_TYPE``, dead-lettering to ``<queue>.dead``
    (and, on quorum queues, ``x-delivery-limit`` = ``MQLAB_DELIVERY_LIMIT``)."""
    s = settings.load()
    arguments = queues.work_queue_arguments(name, s.queue_type, s.delivery_limit)
    return declared(name, arguments, timeout=timeout)


def dead_letter_queue(name: str, timeout: float | None = None) -> RabbitQueue:
    """The work queue's dead-letter queue ``<queue>.dead`` (durable, same type)."""
    dead = queues.dead_letter_queue(name)
    return declared(dead, queues.arguments(settings.load().queue_type), timeout=timeout)


def plain_queue(name: str, timeout: float | None = None) -> RabbitQueue:
    """Tutorial 1's queue: non-durable classic, or a (always durable) quorum queue with
    ``MQLAB_QUEUE_TYPE=quorum``."""
    queue_type = settings.load().queue_type
    arguments = queues.arguments(queue_type)
    return declared(name, arguments, durable=queue_type == "quorum", timeout=timeout)


class NodeListConnection(RobustConnection):
    """aio-pika's ``RobustConnection`` over a list of nodes: each (re)connection attempt tries
    the nodes in turn, starting with the one it was last connected to.

    A reconnection that keeps failing for :attr:`GIVE_UP_AFTER` seconds
    (``MQLAB_RECONNECT_SECONDS``), or that RabbitMQ refuses (a changed password: retrying cannot
    help), calls :attr:`ON_GIVE_UP` with the error, so the worker stops and exits non-zero
    instead of retrying forever. :func:`make_broker` sets these on a subclass per broker.

    aio-pika has no hook for the attempt itself, so this overrides its private
    ``RobustConnection.__connect_transport`` (aio-pika 10.2.1), the one place that calls
    ``Connection.connect`` with ``self.url``.
    """

    NODES: tuple[str, ...] = ()
    GIVE_UP_AFTER: float = 60.0
    ON_GIVE_UP: Callable[[BaseException], None] | None = None

    def __init__(self, url: URL, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        # Every node gets the options the first URL carries (heartbeat, timeouts...).
        options = self.url.query
        self._nodes = [URL(node).update_query(options) for node in self.NODES] or [self.url]
        self._current = 0
        self._failing_since: float | None = None

    async def _RobustConnection__connect_transport(self) -> None:
        error: BaseException | None = None
        for step in range(len(self._nodes)):
            index = (self._current + step) % len(self._nodes)
            self.url = self._nodes[index]
            try:
                await super()._RobustConnection__connect_transport()  # type: ignore[misc]
            except CONNECTION_EXCEPTIONS as e:
                error = e
                continue
            self._current, self._failing_since = index, None
            return
        assert error is not None
        self._failing_since = self._failing_since or time.monotonic()
        refused = isinstance(error, REFUSED)
        too_long = time.monotonic() - self._failing_since > self.GIVE_UP_AFTER
        if self.connection_attempt and self.ON_GIVE_UP is not None and (refused or too_long):
            self.ON_GIVE_UP(error)
        raise error


REFUSED = (aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.ConnectionNotAllowed)
"""What RabbitMQ answers a login it refuses (wrong password, no access to the vhost)."""


def make_broker(
    amqp_url: str | None = None,
    *,
    channel: Channel | None = None,
    on_give_up: Callable[[BaseException], None] | None = None,
    **options: Any,
) -> RabbitBroker:
    """A ``RabbitBroker`` for ``amqp_url`` (default ``AMQP_URL``; several nodes joined by
    ``;`` fail over in turn), with ``MQLAB_HEARTBEAT`` and ``MQLAB_CONNECT_TIMEOUT``.

    Parameters:
        amqp_url: broker URI or node list.
        channel: FastStream's default ``Channel`` settings (``prefetch_count``,
            ``publisher_confirms``, ``on_return_raises``).
        on_give_up: called with the error when reconnecting stops making sense
            (:class:`NodeListConnection`).
        options: further ``RabbitBroker`` arguments (``graceful_timeout``, ``ack_policy``).
    """
    s = settings.load()
    nodes = settings.amqp_urls(amqp_url or s.amqp_url)
    first = URL(nodes[0])
    if "heartbeat" not in first.query:
        first = first.update_query(heartbeat=s.heartbeat)
    broker = RabbitBroker(
        str(first),
        timeout=s.connect_timeout,
        reconnect_interval=RECONNECT_INTERVAL,
        default_channel=channel,
        logger=None,  # the one-line status lines are ours (mqlab's worker output)
        **options,
    )
    connection_class = type(
        "Nodes",
        (NodeListConnection,),
        {
            "NODES": tuple(nodes),
            "GIVE_UP_AFTER": s.reconnect_seconds,
            "ON_GIVE_UP": staticmethod(on_give_up) if on_give_up else None,
        },
    )
    # RabbitBroker passes these to aio_pika.connect_robust, which takes a connection_class.
    broker._connection_kwargs["connection_class"] = connection_class
    return broker


async def connect(broker: RabbitBroker, amqp_url: str | None = None) -> None:
    """Connect ``broker`` (``fail_fast``: the first attempt over the node list either
    succeeds or raises).

    Raises:
        BrokerUnreachable: no node answered.
        AccessRefused: wrong user name or password, or no access to the vhost.
    """
    try:
        await broker.connect()
    except BaseException as e:
        if isinstance(e, (*CONNECTION_EXCEPTIONS, TimeoutError)):
            raise translate(e, amqp_url, "connect") from e
        raise


def connected_node(broker: RabbitBroker) -> str:
    """The node ``broker`` is connected to, as ``host:port`` (one of ``AMQP_URL``'s list: the
    URL :class:`NodeListConnection` last connected with)."""
    connection = broker._connection  # FastStream's RobustConnection (its Context name)
    assert connection is not None, "connect the broker first"
    return settings.node_address(connection.url.host or "", connection.url.port or 5672)


async def declare(broker: RabbitBroker, *queues_: RabbitQueue) -> None:
    """Declare each queue on the broker's channel (``broker.declare_queue``).

    Raises:
        QueueMismatch: it exists with other arguments (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission (403).
    """
    for queue in queues_:
        try:
            await broker.declare_queue(queue)
        except aiormq.exceptions.AMQPError as e:
            raise translate(e, None, "declare", queue.name) from e


async def run_app(app: FastStream) -> None:
    """Run ``app`` (FastStream's ``app.run()``). If it stops on a broker error (a 403 on
    ``basic.consume``, raised by ``app.run()`` as it starts the subscriber), its broker's
    connection is closed before the error leaves the event loop: FastStream does not close it
    then, and aiormq's still-pending tasks would be reported by asyncio at exit ("Task was
    destroyed but it is pending!", "Future exception was never retrieved") after the program's
    one line.

    Raises:
        aiormq.exceptions.AMQPError: what stopped it (the caller translates it).
    """
    try:
        await app.run()
    except aiormq.exceptions.AMQPError:
        if app.broker is not None:
            with contextlib.suppress(Exception):  # the connection may be half gone already
                await app.broker.stop()
        raise


CHANNEL_CODES: dict[type[Exception], int] = {
    aiormq.exceptions.ChannelAccessRefused: 403,
    aiormq.exceptions.ChannelNotFoundEntity: 404,
    aiormq.exceptions.ChannelLockedResource: 405,
    aiormq.exceptions.ChannelPreconditionFailed: 406,
}
"""aiormq's channel exceptions and the AMQP reply code each stands for (aiormq raises them
with the reply text only: ``aiormq/channel.py``, ``exception_by_code``)."""


def translate(
    error: BaseException, amqp_url: str | None, doing: str, queue: str | None = None
) -> MqlabError:
    """aio-pika's (aiormq's) exception as mqlab's one-line error.

    Parameters:
        error: what aio-pika raised.
        amqp_url: the broker URI or node list (for the address in the message).
        doing: ``connect``, ``declare``, ``publish`` or ``consume``.
        queue: the queue concerned, if any.
    """
    s = settings.load()
    url = URL(settings.amqp_urls(amqp_url or s.amqp_url)[0])
    user, vhost = url.user or "guest", url.path[1:] or "/"
    text = str(error.args[-1]) if error.args else str(error)
    if isinstance(error, aiormq.exceptions.ChannelClosed):
        code = CHANNEL_CODES.get(type(error))
        if code is None:
            code = int(error.args[0] or 0) if error.args else 0
        if code == 406 and doing == "declare":
            return QueueMismatch(queue_mismatch_message(queue or "?", text))
        return refused(code, text, user, vhost, doing)
    if isinstance(error, aiormq.exceptions.ProbableAuthenticationError):
        return AccessRefused(
            f"RabbitMQ refused the login of user '{user}' ({text}): check the user name and "
            "password in AMQP_URL"
        )
    if isinstance(error, aiormq.exceptions.ConnectionNotAllowed):
        return AccessRefused(vhost_refused(user, vhost, f"530 {text}"))
    if isinstance(error, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in text:
        # RabbitMQ answers connection.open for a missing vhost with connection.close (530
        # NOT_ALLOWED); aiormq 6 raises that as "Expected one of ['Connection.OpenOk'], got
        # <Connection.Close ...>" and keeps only the frame's repr, not its reply code.
        return AccessRefused(vhost_refused(user, vhost, "connection.close at connection.open"))
    where = settings.broker_address(amqp_url or s.amqp_url)
    return unreachable(where, f"{type(error).__name__}: {text}" if text else type(error).__name__)
