"""The Dramatiq implementation's broker: the ``RabbitmqBroker`` every program here uses, its
queues, its consumer and its connection, in one module as Dramatiq keeps its own
(``dramatiq/brokers/rabbitmq.py``). The middleware lives apart (:mod:`dramatiq_impl.middleware`).

One function, :func:`make_broker`, builds the ``RabbitmqBroker`` every program here uses, set up
for the tutorial's guarantees. Each choice below names the Dramatiq default it replaces (read
from Dramatiq 2.2's ``dramatiq/brokers/rabbitmq.py``, ``dramatiq/worker.py`` and
``dramatiq/middleware/retries.py``; the environment variables are listed in the Dramatiq API
reference, https://dramatiq.io/reference.html):

========================  =====================================  ================================
setting                   Dramatiq default                       here
========================  =====================================  ================================
``confirm_delivery``      ``False``: publishes are not confirmed ``True`` (``MQLAB_CONFIRMS``):
                          and not ``mandatory``                  wait for the broker's ack, and
                                                                 publish ``mandatory``
queue durability          durable, persistent messages           unchanged (``delivery_mode=2``)
queue names               ``default``                            ``dramatiq.task_queue``,
                                                                 ``dramatiq.hello`` (+ ``.DQ``
                                                                 delay and ``.XQ`` dead-letter)
``dramatiq_queue_         ``0`` = 2 x worker threads (``0`` is   threads (:class:`~dramatiq_impl.
prefetch``                ignored: there is no "unlimited")      middleware.PrefetchPerThread`),
                                                                 or ``--prefetch N``
``max_retries``           20, backoff 15 s .. 7 days             :data:`MAX_RETRIES`, backoff
                                                                 :data:`MIN_BACKOFF_MS` ..
                                                                 :data:`MAX_BACKOFF_MS`
connection attempts       pika's: 1 attempt, 10 s socket         1 attempt, ``MQLAB_CONNECT_
                          timeout; Dramatiq retries an enqueue   TIMEOUT`` s; the first connection
                          6 times                                is opened by us, so a bad URL or
                                                                 password fails at once
========================  =====================================  ================================

**Quorum queues.** The smallest change that makes ``RabbitmqBroker`` declare them.

Dramatiq 2.2 has no queue-type option (its quorum pull requests were closed). Its
``RabbitmqBroker`` builds every queue's x-arguments in one method, ``_build_queue_arguments``
(the work queue and its ``.DQ`` delay queue: dead-lettering to ``.XQ``), and declares the ``.XQ``
dead-letter queue in ``_declare_xq_queue`` (``x-message-ttl``: dead letters expire after 7 days).
:class:`Broker` overrides those two private methods to add ``x-queue-type`` from
``MQLAB_QUEUE_TYPE`` and, on quorum queues, ``x-delivery-limit`` (``MQLAB_DELIVERY_LIMIT``), so the
work queue, ``.DQ`` and ``.XQ`` are all quorum queues, replicated like the messages they hold. The
rest of Dramatiq is untouched: its consumer already sets a per-consumer ``basic_qos`` (quorum
queues refuse a global one), messages are persistent, and a message that exceeds the delivery
limit is dead-lettered to ``.XQ`` like one that ran out of retries. Message TTL (``.XQ``) is
supported by quorum queues from RabbitMQ 3.10. Private methods can change in a Dramatiq release:
the test suite declares all three queues on both types and would fail first.

**Refusals.**

Dramatiq's worker runs the actors on its own threads, apart from each queue's consumer thread,
which keeps the connection (and its heartbeats) going however long a task takes. When the
consumer's connection fails, Dramatiq's ``_ConsumerThread`` logs it and opens a new consumer,
forever (``dramatiq/worker.py``): right after a broker restart, and also when the broker now
refuses the worker, where retrying cannot help. :class:`Broker` ends the worker process
in that case with one ``error:`` line and the refusal's exit code (the same as for a wrong
password at start); Dramatiq's main process then stops the others and exits with that code
(``dramatiq/cli.py``: "Worker ... exited
unexpectedly"), so a supervisor restarts it.

**What of a message is honoured** is decided as it comes off the queue, before any middleware
sees it (:mod:`dramatiq_impl.admission`): :class:`Consumer` nacks what is refused (parked in
``.XQ``, one line, :mod:`shared.poison`) and hands on the rest with its options cut down to an
allow-list; :class:`Broker`'s ``consumer_class`` plugs it in.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, cast

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker, _RabbitmqConsumer
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware, Retries, default_middleware

from dramatiq_impl import admission
from dramatiq_impl.middleware import (
    JournalMiddleware,
    ParkPoison,
    PrefetchPerThread,
    RetryUntilPublished,
    ShutdownOnce,
)
from shared import pika_connection, pika_errors, poison, queues, settings
from shared.errors import MqlabError

HELLO_QUEUE = "dramatiq.hello"
TASK_QUEUE = "dramatiq.task_queue"

MAX_RETRIES = poison.MAX_ATTEMPTS - 1
"""Retries after a failed execution, so a message runs at most ``MAX_ATTEMPTS`` (3) times, as in
the other implementations (Dramatiq default: 20). A message cannot change it
(:mod:`dramatiq_impl.admission`)."""
MIN_BACKOFF_MS = 100
"""First retry after 100-200 ms (Dramatiq default ``min_backoff``: 15 000 ms)."""
MAX_BACKOFF_MS = 1000
"""Backoff cap (Dramatiq default ``max_backoff``: 7 days)."""

UNLIMITED_PREFETCH = 65535
"""What "unlimited" prefetch (``0``) means here. ``dramatiq_queue_prefetch=0`` is silently read as
"not set" (2 x threads), and the Worker caps prefetch at 65535, so the largest value stands in."""


def hello_queue() -> str:
    """The hello-world queue's name (``MQLAB_QUEUE_PREFIX`` applied)."""
    return settings.load().queue(HELLO_QUEUE)


def task_queue() -> str:
    """The work queue's name (``MQLAB_QUEUE_PREFIX`` applied)."""
    return settings.load().queue(TASK_QUEUE)


def with_siblings(queue: str) -> list[str]:
    """``queue`` and the two queues Dramatiq declares next to it: ``.DQ`` (delayed messages,
    i.e. retries waiting out their backoff) and ``.XQ`` (dead letters)."""
    return [queue, dq_name(queue), xq_name(queue)]


def middleware() -> list[Middleware]:
    """Dramatiq's default middleware with our :class:`~dramatiq.middleware.Retries` bounds, plus
    the journal, per-thread prefetch and SIGTERM middleware of :mod:`dramatiq_impl.middleware`."""
    stack: list[Middleware] = []
    for cls in default_middleware:
        if cls is Retries:
            # Default: Retries(max_retries=20, min_backoff=15 s, max_backoff=7 days). A message
            # that still fails after MAX_RETRIES is nacked without requeue and dead-lettered to
            # its queue's .XQ sibling (the queue's x-dead-letter-routing-key).
            # RetryUntilPublished: a retry the broker cannot take now keeps its message unacked.
            stack.append(
                RetryUntilPublished(
                    max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS
                )
            )
        else:
            stack.append(cls())
    return [*stack, PrefetchPerThread(), ShutdownOnce(), ParkPoison(), JournalMiddleware()]


# -- the consumer ------------------------------------------------------------------------------

REFUSED = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)
"""pika's errors for a broker that refuses the user or the vhost (403 ACCESS_REFUSED)."""


def refusal(error: BaseException | None) -> BaseException | None:
    """The 403 refusal inside ``error`` (Dramatiq wraps pika's errors: ``ConnectionClosed``
    keeps it as ``.message`` and as the cause), or ``None``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, REFUSED):
            return error
        if getattr(error, "reply_code", None) == 403:
            return error
        inner = getattr(error, "message", None)
        if isinstance(inner, BaseException):
            error = inner
            continue
        error = error.__cause__ or error.__context__
    return None


def _give_up_on_refusal(error: BrokerConnectionError, broker: RabbitmqBroker, queue: str) -> None:
    """End this process with one ``error:`` line if ``error`` wraps a refusal that retrying
    cannot heal (403 ACCESS_REFUSED, 530 NOT_ALLOWED on ``basic.consume``)."""
    cause = error.message if isinstance(error.message, BaseException) else None
    if cause is not None and getattr(cause, "reply_code", None) in (403, 530):
        refused = pika_errors.translate(cause, broker.parameters, queue, "consume")
        print(f"error: {refused}", file=sys.stderr, flush=True)
        os._exit(refused.exit_code)


class Consumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer (``basic.consume`` happens on the first ``next``), which
    gives up on a refusal (:func:`_give_up_on_refusal`) and decides what of each message is
    honoured (:func:`dramatiq_impl.admission.refusal`), parking what is refused instead of
    handing it to a worker thread."""

    def __next__(self) -> Any:
        try:
            message = super().__next__()
        except BrokerConnectionError as e:
            _give_up_on_refusal(e, self.broker, self.queue_name)
            raise
        if message is None:
            return None
        fault = admission.refusal(message, self.queue_name)
        if fault is None:
            return message
        self.nack(message)  # basic_nack without requeue: dead-lettered to .XQ
        poison.report(message.message_id, xq_name(self.queue_name), fault)  # once nacked
        return None


# -- the broker --------------------------------------------------------------------------------


def _delete_channel(broker: RabbitmqBroker) -> None:
    """Dramatiq's ``channel`` deleter, except that the channel may be missing from
    ``broker.channels``: Dramatiq's getter stores a new channel for the thread *before*
    ``confirm_delivery()`` and adds it to that set only after, so when the node dies during
    ``confirm_delivery`` its deleter's ``channels.remove`` raised ``KeyError`` out of
    ``declare_queue`` (seen when a cluster node was SIGKILLed under a reconnecting producer)."""
    channel = getattr(broker.state, "channel", None)
    if channel is None:
        return
    del broker.state.channel
    broker.channels.discard(channel)
    if channel.is_open:
        with contextlib.suppress(Exception):
            channel.close()


class Broker(RabbitmqBroker):
    """Dramatiq's ``RabbitmqBroker`` with ``MQLAB_QUEUE_TYPE`` queues, a ``channel`` deleter
    that tolerates a channel that died while being set up (:func:`_delete_channel`), and
    consumers (:class:`Consumer`) that give up on a refusal and park a poison envelope.

    Dramatiq's worker treats every failure of ``basic.consume`` as a connection error and
    tries again every 3 s, logging CRITICAL forever; a 403 ACCESS_REFUSED (no read permission)
    never heals. Here such a refusal, on ``basic.consume`` or while connecting or declaring,
    ends the worker process with one ``error:`` line and
    :attr:`~shared.exit_codes.ExitCode.NOPERM` (the Dramatiq main process then stops with
    that code, saying the worker exited).
    """

    channel = cast(property, vars(RabbitmqBroker)["channel"]).deleter(_delete_channel)

    @property
    def consumer_class(self) -> type[Consumer]:
        """The consumer Dramatiq's ``consume`` builds: :class:`Consumer`."""
        return Consumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """``RabbitmqBroker.consume``; a 403 refusal while connecting or declaring exits the
        process (:class:`~shared.errors.AccessRefused`'s exit code) instead of raising into
        Dramatiq's retry loop (a refused ``basic.consume`` is :class:`Consumer`'s)."""
        try:
            return super().consume(queue_name, prefetch, timeout)
        except Exception as e:
            refused = refusal(e)
            if refused is None:
                raise
            error = pika_errors.translate(refused, self.parameters, queue_name, "connect")
            print(f"error: {error}", file=sys.stderr, flush=True)
            os._exit(error.exit_code)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        s = settings.load()
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
        arguments.update(queues.arguments(s.queue_type, delivery_limit=s.delivery_limit))
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {"x-message-ttl": DEAD_MESSAGE_TTL}
        arguments.update(queues.arguments(settings.load().queue_type))
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True, arguments=arguments
        )


def make_broker(amqp_url: str | None = None) -> RabbitmqBroker:
    """The ``RabbitmqBroker`` for ``amqp_url`` (default ``AMQP_URL``; several nodes joined by
    ``;`` become Dramatiq's list of URLs), set up as the table above says. No connection is
    opened yet.

    Raises:
        ValueError: the URL does not parse.
    """
    s = settings.load()
    urls = settings.amqp_urls(amqp_url or s.amqp_url)
    broker = Broker(  # RabbitmqBroker + MQLAB_QUEUE_TYPE, giving up on refusals (above)
        # Several nodes: a list, one pika URLParameters per node; pika's BlockingConnection
        # connects to the first that answers, and so does every reconnect of the consumer.
        url=urls if len(urls) > 1 else urls[0],
        # Default False: enqueue would neither wait for the broker's ack nor set `mandatory`,
        # so a publish the broker refused or could not route would go unnoticed.
        confirm_delivery=s.confirms,
        middleware=middleware(),
    )
    # pika defaults: socket_timeout 10 s, stack_timeout 15 s; fail within MQLAB_CONNECT_TIMEOUT.
    for params in nodes(broker):
        params.connection_attempts = 1
        params.socket_timeout = s.connect_timeout
        params.stack_timeout = s.connect_timeout
        params.heartbeat = s.heartbeat
        # pika closes a connection RabbitMQ blocked (memory/disk alarm) for this long.
        params.blocked_connection_timeout = s.blocked_timeout
    return broker


def translate(
    error: BaseException, broker: RabbitmqBroker, queue: str, doing: str = "?"
) -> MqlabError:
    """Map a pika error, bare or wrapped in Dramatiq's ``ConnectionClosed``, to an mqlab error.

    Dramatiq wraps every pika failure of ``enqueue`` / ``declare_queue`` in
    ``dramatiq.errors.ConnectionClosed`` (the pika exception is its ``message``), after retrying.
    """
    cause = error.message if isinstance(error, BrokerConnectionError) else error
    if not isinstance(cause, BaseException):
        cause = error
    return pika_errors.translate(cause, broker.parameters, queue, doing)


def nodes(broker: RabbitmqBroker) -> list[pika.ConnectionParameters]:
    """``broker``'s connection parameters, one per node, in ``AMQP_URL`` order (Dramatiq keeps
    one ``ConnectionParameters``, or a list of them for a cluster, in ``broker.parameters``)."""
    found = broker.parameters
    return list(found) if isinstance(found, list) else [found]


def first_node(broker: RabbitmqBroker) -> str:
    """``host:port`` of the node of ``broker`` that answers first, asked on a connection of
    our own (pika keeps the node a connection reached private, and tries the node list in
    order, as Dramatiq's connection does).

    Raises:
        MqlabError: no node answers (:func:`shared.pika_connection.connect`).
    """
    found = pika_connection.connect(nodes(broker))
    found.connection.close()
    assert found.node is not None  # connect() names the node that answered
    return settings.node_address(found.node.host, found.node.port)


def connect(broker: RabbitmqBroker) -> pika.BlockingConnection:
    """Open ``broker``'s connection for this thread (Dramatiq keeps one per thread), failing
    fast; return it.

    Dramatiq would otherwise retry a failed connection up to 6 times inside ``enqueue``, and a
    worker's consumer would retry forever, logging tracebacks.

    Raises:
        BrokerUnreachable: refused, timed out or not an AMQP server.
        AccessRefused: wrong user name or password, or no access to the vhost.
    """
    try:
        return broker.connection  # the property opens this thread's connection
    except (pika.exceptions.AMQPError, *pika_connection.CONNECT_ERRORS) as e:
        raise translate(e, broker, "?", "connect") from e


def declare(broker: RabbitmqBroker, queue: str) -> None:
    """Declare ``queue`` with its ``.DQ`` and ``.XQ`` siblings (durable, as Dramatiq always
    declares them) on this thread's connection (:func:`connect`), failing fast. Dramatiq
    declares a queue once per broker: a queue to declare again goes back into
    ``broker.queues_pending`` first.

    Raises:
        BrokerUnreachable, AccessRefused: as :func:`connect`.
        QueueMismatch: ``queue`` exists with other arguments, e.g. non-durable (406).
    """
    connect(broker)
    try:
        broker.declare_queue(queue, ensure=True)
    except (
        BrokerConnectionError,
        pika.exceptions.AMQPError,
        *pika_connection.CONNECT_ERRORS,
    ) as e:
        # Dramatiq retries and wraps pika's AMQP errors only; a socket error of a node
        # dying under the declare (ConnectionResetError) comes through bare.
        raise translate(e, broker, queue, "declare") from e
