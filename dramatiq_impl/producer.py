"""The Dramatiq producer: :class:`Producer`, the one ``send`` and ``new_task`` use and an
application keeps open.

It publishes as Dramatiq's ``enqueue`` does (persistent, ``mandatory`` under publisher confirms,
``confirm_delivery=True``) minus its six silent retries (the class docstring says why). The
retry and the failure classes are :class:`shared.producer.BaseProducer`'s; this module is
Dramatiq's (pika's) hooks.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pika
import pika.exceptions
from dramatiq import Actor, Message

from dramatiq_impl import actors
from dramatiq_impl.broker import connect, declare, make_broker, task_queue
from shared import pika_connection, pika_errors
from shared.errors import MqlabError, PublishRefused, Unroutable, blocked
from shared.pika_connection import LOST
from shared.producer import BaseProducer, Failure


class Producer(BaseProducer[Message[Any]]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``.

    It publishes as ``RabbitmqBroker.enqueue`` does (the ``before_enqueue`` / ``after_enqueue``
    middleware hooks, persistent, ``mandatory`` on the broker's confirming channel), with
    three differences that make each publish confirmed or an error:

    * Before each publish it lets pika read what arrived meanwhile
      (``process_data_events(0)``), so a connection that died while the application was idle
      (longer than the heartbeat timeout; a broker restart) is replaced before it is written
      into (django_dramatiq issue #85: ``StreamLostError`` on the next send).
    * A connection lost *during* a publish is replaced and the message published again, same
      message_id (at-least-once; riding through a node loss:
      :meth:`~shared.producer.BaseProducer.publish`), for a bounded time, then raises.
      ``enqueue`` retries six times, silently, which under a memory alarm took six
      blocked-connection timeouts.
    * While RabbitMQ blocks publishers (``connection.blocked``, memory or disk alarm) a
      publish waits at most ``MQLAB_BLOCKED_TIMEOUT`` seconds (pika's
      ``blocked_connection_timeout``), then raises :class:`~shared.errors.PublisherBlocked`
      naming the alarm.
    * A confirm that does not arrive within ``MQLAB_CONFIRM_TIMEOUT`` seconds (a quorum queue
      without a majority) drops the connection; the base publishes the message again, then
      raises :class:`~shared.errors.PublishUnconfirmed`.

    With ``declare`` the queue and its ``.DQ``/``.XQ`` siblings are declared once per
    connection (``declare_queue(ensure=True)``); without it a missing queue is
    :class:`~shared.errors.Unroutable`, not silently re-created.

    Parameters:
        amqp_url, queue, declare: as :class:`~shared.producer.BaseProducer` (the queue
            defaults to the work queue, and is declared with its siblings).
        actor: the actor the messages are for (default ``work``).
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        *,
        queue: str | None = None,
        declare: bool = True,
        actor: Actor[..., Any] | None = None,
    ) -> None:
        super().__init__(amqp_url, queue=queue or task_queue(), declare=declare)
        self.actor = actor or actors.work
        self.broker = make_broker(amqp_url)
        self._connection: pika.BlockingConnection | None = None

    def _drop(self) -> None:
        """Forget this thread's connection (Dramatiq closes it, ignoring errors)."""
        self._connection = None
        self._blocked = None
        with contextlib.suppress(Exception):
            del self.broker.connection

    def _forget(self) -> None:
        """Forget this thread's connection and channel without closing them (Dramatiq's own
        deleters would try a close handshake on a dropped stream, and log it)."""
        self._connection = None
        self._blocked = None
        for attr, pool in (
            ("channel", self.broker.channels),
            ("connection", self.broker.connections),
        ):
            held = getattr(self.broker.state, attr, None)
            if held is not None:
                delattr(self.broker.state, attr)
                pool.discard(held)

    def _message(self, body: str) -> Message[Any]:
        return self.actor.message(body).copy(queue_name=self.queue)

    def _ready(self) -> None:
        """A live connection (a new one if pika no longer hears from the broker), not blocked
        (else :class:`~shared.errors.PublisherBlocked` after the bound), queue declared."""
        connection = self._connection
        try:
            if connection is None or not connection.is_open:
                raise pika.exceptions.ConnectionWrongStateError("no connection")
            connection.process_data_events(time_limit=0)
        except LOST:
            self._drop()
            connection = self._connection = connect(self.broker)
            pika_connection.watch_blocked(connection, self._on_blocked, self._on_unblocked)
            if self.declare:
                self._declare()
        self._wait_unblocked(lambda: connection.process_data_events(time_limit=0.2))

    def _declare(self) -> None:
        """Declare the queue with its siblings (again: Dramatiq declares a queue once per
        broker, so a new connection, or a queue deleted meanwhile, needs it pending again)."""
        self.broker.queues_pending.add(self.queue)
        declare(self.broker, self.queue)

    def _publish_one(self, message: Message[Any], body: str) -> None:
        try:
            self._publish_confirmed(message)
        except pika.exceptions.UnroutableError as e:
            if not self.declare:
                raise Unroutable(
                    f"message returned unroutable: no queue named '{self.queue}'"
                ) from e
            # The queue was deleted meanwhile: declare it again and republish, as Dramatiq's
            # enqueue does.
            self._declare()
            try:
                self._publish_confirmed(message)
            except pika.exceptions.UnroutableError as again:
                raise Unroutable(
                    f"message returned unroutable: no queue named '{self.queue}'"
                ) from again

    def _publish_confirmed(self, message: Message[Any]) -> None:
        """``RabbitmqBroker.enqueue``'s publish, once, with the confirm deadline.

        Raises:
            PublishRefused: the broker nacked it.
        """
        assert self._connection is not None
        self.broker.emit_before("enqueue", message, None)
        try:
            # Dramatiq waits for the confirm without a deadline; MQLAB_CONFIRM_TIMEOUT.
            with pika_connection.confirm_deadline(self._connection, self.confirm_timeout):
                self.broker.channel.basic_publish(
                    exchange="",
                    routing_key=self.queue,
                    body=message.encode(),
                    properties=pika.BasicProperties(delivery_mode=2),
                    mandatory=self.broker.confirm_delivery,
                )
        except pika.exceptions.NackError as e:
            raise PublishRefused(f"broker refused (nacked) a message for '{self.queue}'") from e
        self.broker.emit_after("enqueue", message, None)

    def _classify(self, error: Exception) -> Failure | MqlabError | None:
        return pika_connection.classify(error, self.broker.parameters, self.queue)

    def _cause(self, error: Exception) -> str:
        return pika_errors.root_cause(error)

    def close(self) -> None:
        """Close the broker's connections (waiting at most ``MQLAB_BLOCKED_TIMEOUT``).

        Raises:
            PublisherBlocked: with confirms off, the broker still blocked the connection, so
                messages written to it may not have been taken.
        """
        reason = self._blocked
        self._connection = None
        try:
            self.broker.close()
        except pika.exceptions.ConnectionBlockedTimeout as e:
            raise blocked(reason or "", self.settings.blocked_timeout, sent=True) from e
        except Exception:  # noqa: BLE001  (closing a dead connection: nothing left to lose)
            pass
