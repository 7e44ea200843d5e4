"""The Celery producer: :class:`Producer`, the one ``send`` and ``new_task`` use and an
application keeps open.

Each message is a Celery task message (``celery_impl.work``, or ``celery_impl.hello``) whose task
id is the contract's message_id, published with ``mandatory`` under publisher confirms
(``confirm_publish``), so the broker cannot drop it silently (RabbitMQ docs, "Consumer
Acknowledgements and Publisher Confirms"). The retry and the failure classes are
:class:`shared.producer.BaseProducer`'s; this module is Celery's (kombu's, py-amqp's) hooks.
"""

from __future__ import annotations

import contextlib

import amqp.exceptions
import kombu.exceptions
from celery import Task
from kombu.connection import Connection
from kombu.messaging import Producer as KombuProducer

from celery_impl import tasks
from celery_impl.broker import (
    app,
    connect,
    declare,
    declare_work_queue,
    hello_queue_entity,
    refused_by_broker,
    task_queue,
    watch_blocked,
    work_queue,
)
from shared.contract import PERSISTENT, TRANSIENT, Envelope
from shared.errors import MqlabError, PublishRefused, Unroutable, blocked
from shared.producer import BaseProducer, Failure

CONNECTION_LOST = (OSError, kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError)
"""What py-amqp and kombu raise when the connection drops mid-publish."""


def publish_confirmed(
    task: Task,
    producer: KombuProducer,
    queue: str,
    args: tuple[object, ...],
    envelope: Envelope,
    delivery_mode: int = PERSISTENT,
    confirm_timeout: float | None = None,
) -> None:
    """Publish one message for ``task`` to ``queue`` through the default exchange.

    The task id is ``envelope.message_id``; the AMQP ``message_id`` and ``timestamp`` properties
    and the precise-time header follow :mod:`shared.contract` (``content_type`` is Celery's
    ``application/json``). ``mandatory=True`` makes RabbitMQ return a message no queue takes;
    under confirms py-amqp waits for the broker's ack (at most ``confirm_timeout`` seconds)
    and raises on the return or a nack.

    Raises:
        Unroutable: no queue named ``queue`` (the broker returned the message).
        PublishRefused: the broker nacked the message.
        TimeoutError: no confirm within ``confirm_timeout`` seconds.
    """
    try:
        task.apply_async(
            args=args,
            task_id=envelope.message_id,
            producer=producer,
            queue=work_queue(queue),
            declare=[],  # declared by the caller, which reports a 406 clearly
            delivery_mode=delivery_mode,
            headers=envelope.headers(),
            message_id=envelope.message_id,
            timestamp=envelope.timestamp,
            mandatory=True,
            # py-amqp waits for the confirm without a deadline otherwise; TimeoutError after it.
            confirm_timeout=confirm_timeout,
        )
    except amqp.exceptions.MessageNacked as e:
        raise PublishRefused(f"broker refused (nacked) a message for '{queue}'") from e
    except amqp.exceptions.ChannelError as e:
        if getattr(e, "reply_code", None) == 312 or "NO_ROUTE" in str(e):
            raise Unroutable(f"message returned unroutable: no queue named '{queue}'") from e
        raise


def _timed_out(error: BaseException) -> bool:
    """Whether ``error`` is, or wraps, a socket timeout (py-amqp's ``confirm_timeout``)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Producer(BaseProducer[Envelope]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``.

    * Each :meth:`publish` returns only once the broker confirmed the message
      (``confirm_publish``; with ``MQLAB_CONFIRMS=0`` once it is written), else it raises.
    * Before each publish it reads what the broker sent meanwhile
      (``drain_events(timeout=0)``), so a connection that died while the application was idle
      (longer than the heartbeat timeout: py-amqp only answers heartbeats while it reads; a
      broker restart) is noticed and replaced, not written into: without confirms that is
      kombu issue #59, a publish that returns but never arrives. A connection lost *during*
      a publish is replaced and the message published again with the same task id
      (at-least-once; riding through a node loss: :meth:`~shared.producer.BaseProducer.publish`).
    * While RabbitMQ blocks publishers (``connection.blocked``, memory or disk alarm) a
      publish waits at most ``MQLAB_BLOCKED_TIMEOUT`` seconds (py-amqp's ``confirm_timeout``,
      and a socket timeout on close), then raises :class:`~shared.errors.PublisherBlocked`
      naming the alarm. Celery itself would wait forever.
    * A confirm that does not arrive in time (a quorum queue without a majority) drops the
      connection; the base publishes the message again, then raises
      :class:`~shared.errors.PublishUnconfirmed`. py-amqp has one ``confirm_timeout`` for
      both waits: the smaller of
      ``MQLAB_CONFIRM_TIMEOUT`` and ``MQLAB_BLOCKED_TIMEOUT``.

    Parameters:
        task: the Celery task the messages are for (default ``celery_impl.work``).
        amqp_url, queue, declare, durable: as :class:`~shared.producer.BaseProducer` (several nodes
            are kombu's failover list; the queue defaults to the work queue).
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        *,
        task: Task | None = None,
        durable: bool = True,
        queue: str | None = None,
        declare: bool = True,
    ) -> None:
        self.task = task or tasks.work
        super().__init__(amqp_url, queue=queue or task_queue(), declare=declare, durable=durable)
        self._conn: Connection | None = None
        self._producer: KombuProducer | None = None

    @property
    def confirm_timeout(self) -> float:
        """py-amqp has one wait for a confirm, ``confirm_timeout``: it bounds both an
        unconfirmed publish (``MQLAB_CONFIRM_TIMEOUT``) and a blocked one
        (``MQLAB_BLOCKED_TIMEOUT``), so it is the smaller of the two (seconds)."""
        return min(self.settings.confirm_timeout, self.settings.blocked_timeout)

    def _open(self) -> None:
        self._drop()
        conn = connect(self.amqp_url)
        self._conn = conn
        watch_blocked(conn, self._on_blocked, self._on_unblocked)
        try:
            if self.declare and self.durable:
                declare_work_queue(conn, self.queue)  # and its dead-letter queue
            elif self.declare:
                declare(conn, hello_queue_entity())
            self._producer = app.amqp.Producer(conn.channel())
        except amqp.exceptions.AMQPError as e:
            raise refused_by_broker(e, conn, "declare") from e

    def _drop(self) -> None:
        """Forget the connection (closing it without waiting, ignoring errors)."""
        conn, self._conn, self._producer = self._conn, None, None
        self._blocked = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.collect()

    @property
    def blocked_wait(self) -> float:
        """py-amqp's ``confirm_timeout`` bounds the wait under a resource alarm too."""
        return self.confirm_timeout

    def _message(self, body: str) -> Envelope:
        return Envelope()

    def _ready(self) -> None:
        conn, producer = self._conn, self._producer
        if conn is None or producer is None:
            self._open()
            return
        try:
            conn.connection.drain_events(timeout=0)
        except TimeoutError:  # socket.timeout: nothing to read, the connection is fine
            pass
        except (*CONNECTION_LOST, amqp.exceptions.AMQPError):
            self._open()

    def _publish_one(self, message: Envelope, body: str) -> None:
        assert self._producer is not None
        mode = PERSISTENT if self.durable else TRANSIENT
        publish_confirmed(
            self.task, self._producer, self.queue, (body,), message, mode, self.confirm_timeout
        )

    def _classify(self, error: Exception) -> Failure | MqlabError | None:
        if isinstance(error, TimeoutError):  # confirm_timeout: no ack in time
            # Blocked: the alarm outlasted the wait. Not blocked: a quorum queue without a
            # majority, say; the socket is dropped (no close handshake that would wait on the
            # queue), the message not sent.
            return Failure.BLOCKED if self._blocked is not None else Failure.UNCONFIRMED
        if isinstance(error, amqp.exceptions.AccessRefused) and self._conn is not None:
            return refused_by_broker(error, self._conn, "publish")
        if isinstance(error, CONNECTION_LOST):
            if self._blocked is not None:
                return Failure.BLOCKED
            if _timed_out(error):  # kombu wraps the confirm timeout
                return Failure.UNCONFIRMED
            return Failure.LOST
        return None

    def close(self) -> None:
        """Close the connection, waiting at most ``MQLAB_BLOCKED_TIMEOUT`` seconds.

        Raises:
            PublisherBlocked: the broker still blocked the connection (with confirms off,
                messages written to it may not have been taken).
        """
        conn, reason = self._conn, self._blocked
        if conn is None:
            return
        self._conn = self._producer = None
        try:
            transport = conn.connection.transport
            if transport is not None and transport.sock is not None:
                transport.sock.settimeout(self.settings.blocked_timeout)
            conn.release()
        except TimeoutError as e:
            with contextlib.suppress(Exception):
                conn.collect()
            raise blocked(reason or "", self.settings.blocked_timeout, sent=True) from e
        except (*CONNECTION_LOST, amqp.exceptions.AMQPError):
            with contextlib.suppress(Exception):
                conn.collect()
