"""Tutorial 2 producer: put work messages on the durable ``dramatiq.task_queue``.

    python -m dramatiq_impl.new_task "A task...."           # one message, four units of work
    python -m dramatiq_impl.new_task "quick." --count 100   # one hundred messages

Each message is ``work.send(body)``: Dramatiq publishes it persistent (``delivery_mode=2``),
``mandatory`` and under publisher confirms (``confirm_delivery=True``), so ``enqueue`` returns
only once the broker has taken it. :class:`Producer` publishes as Dramatiq's ``enqueue`` does,
minus its six silent retries (its docstring says why), and is the producer an application
keeps open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from dramatiq import Actor, Message

from dramatiq_impl import actors
from dramatiq_impl.broker import connect, make_broker, task_queue
from shared import cli, pika_errors, settings
from shared.errors import PublishRefused, Unroutable, blocked, lost_twice, unconfirmed
from shared.producer import BaseProducer

LOST = (
    pika.exceptions.AMQPConnectionError,  # StreamLostError, ConnectionClosedByBroker, ...
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
)
"""What pika raises on a connection that died under us (broker restart, missed heartbeats)."""


class Producer(BaseProducer[Message[Any]]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``.

    It publishes as ``RabbitmqBroker.enqueue`` does (the ``before_enqueue`` / ``after_enqueue``
    middleware hooks, persistent, ``mandatory`` on the broker's confirming channel), with
    three differences that make each publish confirmed or an error:

    * Before each publish it lets pika read what arrived meanwhile
      (``process_data_events(0)``), so a connection that died while the application was idle
      (longer than the heartbeat timeout; a broker restart) is replaced before it is written
      into (django_dramatiq issue #85: ``StreamLostError`` on the next send).
    * A connection lost *during* a publish is replaced and the message published once more,
      same message_id (at-least-once); a second failure raises. ``enqueue`` retries six
      times, silently, which under a memory alarm took six blocked-connection timeouts.
    * While RabbitMQ blocks publishers (``connection.blocked``, memory or disk alarm) a
      publish waits at most ``MQLAB_BLOCKED_TIMEOUT`` seconds (pika's
      ``blocked_connection_timeout``), then raises :class:`~shared.errors.PublisherBlocked`
      naming the alarm.
    * A confirm that does not arrive within ``MQLAB_CONFIRM_TIMEOUT`` seconds (a quorum queue
      without a majority) drops the connection and raises
      :class:`~shared.errors.PublishUnconfirmed`; it is not published again.

    With ``declare`` the queue and its ``.DQ``/``.XQ`` siblings are declared once per
    connection (``declare_queue(ensure=True)``); without it a missing queue is
    :class:`~shared.errors.Unroutable`, not silently re-created.

    Parameters:
        amqp_url: broker URI, or several nodes' URIs joined by ``;``; default ``AMQP_URL``.
        queue: target queue; default the work queue.
        declare: declare the queue (with its siblings) on every (re)connection.
        actor: the actor the messages are for (default ``work``).

    Raises:
        shared.errors.MqlabError: from :meth:`publish`: unreachable broker, refused
            credentials or permissions, 406 on declare, unroutable, nacked, unconfirmed or
            blocked publish.
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        *,
        queue: str | None = None,
        declare: bool = True,
        actor: Actor[..., Any] | None = None,
    ) -> None:
        self.settings = settings.load()
        self.amqp_url = amqp_url
        self.queue = queue or task_queue()
        self.declare = declare
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

    def _ready(self) -> pika.BlockingConnection:
        """A live connection (a new one if pika no longer hears from the broker), not blocked
        (else :class:`~shared.errors.PublisherBlocked` after the bound), queue declared."""
        connection = self._connection
        try:
            if connection is None or not connection.is_open:
                raise pika.exceptions.ConnectionWrongStateError("no connection")
            connection.process_data_events(time_limit=0)
        except LOST:
            self._drop()
            connect(self.broker, self.queue, declare=False)
            connection = self._connection = self.broker.connection
            pika_errors.watch_blocked(connection, self._on_blocked, self._on_unblocked)
            if self.declare:
                # A new connection: Dramatiq declares again what it declared on the old one.
                self.broker.queues_pending.add(self.queue)
                connect(self.broker, self.queue, declare=True)
        self._wait_unblocked(lambda: connection.process_data_events(time_limit=0.2))
        return connection

    def publish(self, body: str) -> Message[Any]:
        """Publish one message for :attr:`actor`; return it once the broker confirmed it.

        Raises:
            shared.errors.MqlabError: see the class docstring.
        """
        message = self.actor.message(body).copy(queue_name=self.queue)
        for attempt in (1, 2):
            connection = self._ready()
            try:
                self.broker.emit_before("enqueue", message, None)
                # Dramatiq waits for the confirm without a deadline; MQLAB_CONFIRM_TIMEOUT.
                with pika_errors.confirm_deadline(connection, self.settings.confirm_timeout):
                    self.broker.channel.basic_publish(
                        exchange="",
                        routing_key=self.queue,
                        body=message.encode(),
                        properties=pika.BasicProperties(delivery_mode=2),
                        mandatory=self.broker.confirm_delivery,
                    )
                self.broker.emit_after("enqueue", message, None)
                return message
            except pika_errors.ConfirmTimeout as e:
                # confirm_deadline dropped the TCP stream: forget the connection without a
                # close handshake (it would wait on the queue, and the stream is gone).
                self._forget()
                raise unconfirmed(self.settings.confirm_timeout, 0, 1) from e
            except pika.exceptions.UnroutableError as e:
                if self.declare and attempt == 1:
                    # The queue was deleted meanwhile: declare it again and republish, as
                    # Dramatiq's enqueue does.
                    self.broker.queues_pending.add(self.queue)
                    connect(self.broker, self.queue, declare=True)
                    continue
                raise Unroutable(
                    f"message returned unroutable: no queue named '{self.queue}'"
                ) from e
            except pika.exceptions.NackError as e:
                raise PublishRefused(f"broker refused (nacked) a message for '{self.queue}'") from e
            except pika.exceptions.ConnectionBlockedTimeout as e:
                reason = self._blocked or ""
                self._drop()
                raise blocked(reason, self.settings.blocked_timeout, sent=True) from e
            except pika.exceptions.ChannelClosedByBroker as e:
                self._drop()
                raise pika_errors.translate(e, self.broker.parameters, self.queue, "publish") from e
            except LOST as e:
                self._drop()
                if attempt == 2:
                    raise lost_twice(pika_errors.root_cause(e)) from e
        raise AssertionError("unreachable")

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


def publish(
    bodies: Sequence[str],
    *,
    amqp_url: str | None = None,
    queue: str | None = None,
    declare: bool = True,
) -> list[Message[Any]]:
    """Send one ``work`` message per body through a :class:`Producer`; return the messages
    (``.message_id`` is a UUID4).

    Parameters:
        bodies: message texts.
        amqp_url: broker URI; default ``AMQP_URL`` (read now: a fresh broker per call).
        queue: target queue; default the work queue.
        declare: declare the queue with its siblings first; ``False`` publishes to ``queue``
            as it is, so a missing queue is :class:`~shared.errors.Unroutable`.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions, 406
            on declare, unroutable, nacked or blocked publish (the message says how many were
            confirmed before).
    """
    with Producer(amqp_url, queue=queue, declare=declare) as producer:
        return producer.publish_all(bodies)


def main() -> int:
    return cli.new_task_main("python -m dramatiq_impl.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
