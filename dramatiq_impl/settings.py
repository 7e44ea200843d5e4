"""Broker and queue settings for the Dramatiq implementation.

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
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware, Retries, default_middleware

from dramatiq_impl.consumer import ExitWhenRefused, GuardedConsumer
from dramatiq_impl.middleware import (
    JournalMiddleware,
    ParkPoison,
    PrefetchPerThread,
    RetryUntilPublished,
    ShutdownOnce,
)
from shared import pika_errors, poison, settings
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


def _give_up_on_refusal(error: BrokerConnectionError, broker: RabbitmqBroker, queue: str) -> None:
    """End this process with one ``error:`` line if ``error`` wraps a refusal that retrying
    cannot heal (403 ACCESS_REFUSED, 404 NOT_FOUND, 530 NOT_ALLOWED on ``basic.consume``)."""
    cause = error.message if isinstance(error.message, BaseException) else None
    if cause is not None and getattr(cause, "reply_code", None) in (403, 530):
        refusal = pika_errors.translate(cause, broker.parameters, queue, "consume")
        print(f"error: {refusal}", file=sys.stderr, flush=True)
        os._exit(refusal.exit_code)


class _Consumer(GuardedConsumer):
    """Dramatiq's RabbitMQ consumer (``basic.consume`` happens on the first ``next``), which
    gives up on a refusal (:func:`_give_up_on_refusal`) and parks a poison envelope
    (:class:`~dramatiq_impl.consumer.GuardedConsumer`)."""

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except BrokerConnectionError as e:
            _give_up_on_refusal(e, self.broker, self.queue_name)
            raise


class Broker(ExitWhenRefused):
    """Dramatiq's ``RabbitmqBroker`` with ``MQLAB_QUEUE_TYPE`` queues
    (:class:`~dramatiq_impl.queue_types.TypedQueuesBroker`), whose consumers give up on a
    refusal, on ``basic.consume`` here and when connecting or declaring
    (:class:`~dramatiq_impl.consumer.ExitWhenRefused`).

    Dramatiq's worker treats every failure of ``basic.consume`` as a connection error and
    tries again every 3 s, logging CRITICAL forever; a 403 ACCESS_REFUSED (no read permission)
    never heals. Here such a refusal ends the worker process with one ``error:`` line and exit
    code 3 (the Dramatiq main process then stops with that code, saying the worker exited).
    """

    @property
    def consumer_class(self) -> type[GuardedConsumer]:
        """The consumer Dramatiq's ``consume`` builds: :class:`_Consumer`."""
        return _Consumer


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
    nodes = broker.parameters if isinstance(broker.parameters, list) else [broker.parameters]
    for params in nodes:
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


def connect(broker: RabbitmqBroker, queue: str, *, declare: bool = True) -> None:
    """Open ``broker``'s connection for this thread and (with ``declare``) declare ``queue`` with
    its ``.DQ`` and ``.XQ`` siblings (durable, as Dramatiq always declares them), failing fast.

    Dramatiq would otherwise retry a failed connection up to 6 times inside ``enqueue``, and a
    worker's consumer would retry forever, logging tracebacks.

    Raises:
        BrokerUnreachable: refused, timed out or not an AMQP server.
        AccessRefused: wrong user name or password, or no access to the vhost.
        QueueMismatch: ``queue`` exists with other arguments, e.g. non-durable (406).
    """
    try:
        broker.connection  # noqa: B018  (the property opens this thread's connection)
    except (pika.exceptions.AMQPError, *pika_errors.CONNECT_ERRORS) as e:
        raise translate(e, broker, queue, "connect") from e
    if declare:
        try:
            broker.declare_queue(queue, ensure=True)
        except (BrokerConnectionError, pika.exceptions.AMQPError, *pika_errors.CONNECT_ERRORS) as e:
            # Dramatiq retries and wraps pika's AMQP errors only; a socket error of a node
            # dying under the declare (ConnectionResetError) comes through bare.
            raise translate(e, broker, queue, "declare") from e
