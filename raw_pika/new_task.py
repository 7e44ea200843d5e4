"""Tutorial 2 producer: put work messages on the durable ``task_queue``.

    python -m raw_pika.new_task "A task...."           # one message, four units of work
    python -m raw_pika.new_task "quick." --count 100   # one hundred messages

Every message is persistent (``delivery_mode=2``) and published with ``mandatory`` under
publisher confirms, so the program fails loudly if the broker cannot route or store it
(RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms").

:class:`Producer` is the same producer as an object an application keeps open for hours: each
publish is confirmed or raises, across idle periods longer than the heartbeat timeout, broker
restarts and resource alarms (its docstring says how).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from raw_pika.broker import connect, declare_hello_queue, declare_task_queue, task_queue
from shared import cli, pika_errors, settings
from shared.contract import CONTENT_TYPE, PERSISTENT, TRANSIENT, Envelope
from shared.errors import PublishRefused, Unroutable, blocked, lost_twice, unconfirmed
from shared.producer import BaseProducer

LOST = (
    pika.exceptions.AMQPConnectionError,  # StreamLostError, ConnectionClosedByBroker, ...
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
)
"""What pika raises on a connection that died under us (broker restart, missed heartbeats)."""


def properties(envelope: Envelope, delivery_mode: int = PERSISTENT) -> pika.BasicProperties:
    """The AMQP properties of the message contract (:mod:`shared.contract`)."""
    return pika.BasicProperties(
        message_id=envelope.message_id,
        timestamp=envelope.timestamp,
        content_type=CONTENT_TYPE,
        delivery_mode=delivery_mode,
        headers=envelope.headers(),
    )


def publish_confirmed(
    channel: BlockingChannel, queue: str, body: str, props: pika.BasicProperties
) -> None:
    """Publish ``body`` to ``queue`` through the default exchange with ``mandatory=True``.

    With confirms on (``channel.confirm_delivery()``), pika's blocking channel waits for the
    broker's ack (at most ``MQLAB_CONFIRM_TIMEOUT`` seconds) and raises if the message came
    back or was nacked.

    Raises:
        Unroutable: no queue named ``queue`` (the broker returned the message).
        PublishRefused: the broker nacked the message.
        pika_errors.ConfirmTimeout: no confirm in time (the caller reports it).
    """
    try:
        with pika_errors.confirm_deadline(channel.connection, settings.load().confirm_timeout):
            channel.basic_publish(
                exchange="", routing_key=queue, body=body.encode(), properties=props, mandatory=True
            )
    except pika.exceptions.UnroutableError as e:
        raise Unroutable(f"message returned unroutable: no queue named '{queue}'") from e
    except pika.exceptions.NackError as e:
        raise PublishRefused(f"broker refused (nacked) a message for '{queue}'") from e


class Producer(BaseProducer[Envelope]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``.

    * Each :meth:`publish` returns only once the broker confirmed the message (publisher
      confirms; with ``MQLAB_CONFIRMS=0`` once it is written), else it raises.
    * Before each publish it lets pika read what arrived meanwhile
      (``process_data_events(0)``): heartbeats are answered, and a connection that died while
      the application was idle (longer than the heartbeat timeout, a broker restart) is noticed
      and replaced by a new one. A connection lost *during* a publish is replaced and the
      message published once more with the same message_id (at-least-once); a second failure
      raises.
    * While RabbitMQ blocks publishers (``connection.blocked``, memory or disk alarm: RabbitMQ
      docs, "Blocked Connection Notifications") a publish waits at most
      ``MQLAB_BLOCKED_TIMEOUT`` seconds (pika's ``blocked_connection_timeout``), then raises
      :class:`~shared.errors.PublisherBlocked` naming the alarm.
    * A confirm that does not arrive within ``MQLAB_CONFIRM_TIMEOUT`` seconds (a quorum queue
      without a majority) drops the connection and raises
      :class:`~shared.errors.PublishUnconfirmed`; it is not published again.

    Parameters:
        amqp_url: broker URI, or several nodes' URIs joined by ``;`` (each connection goes to
            the first that answers); default ``AMQP_URL``.
        queue: target queue; default the work queue.
        declare: declare the queue on every (re)connection (as the tutorial does).
        durable: declare it durable and publish persistent messages (tutorial 2); ``False``
            for tutorial 1's plain queue and transient messages.

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
        durable: bool = True,
    ) -> None:
        self.settings = settings.load()
        self.amqp_url = amqp_url
        self.queue = queue or task_queue()
        self.declare = declare
        self.durable = durable
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _params(self) -> list[pika.URLParameters]:
        """Every node's connection parameters (for error messages)."""
        return pika_errors.node_parameters(
            settings.amqp_urls(self.amqp_url or self.settings.amqp_url),
            timeout=self.settings.connect_timeout,
            heartbeat=self.settings.heartbeat,
        )

    def _open(self) -> BlockingChannel:
        self._drop()
        connection = connect(self.amqp_url)
        self._connection = connection
        pika_errors.watch_blocked(connection, self._on_blocked, self._on_unblocked)
        try:
            channel = connection.channel()
            if self.settings.confirms:
                channel.confirm_delivery()
            if self.declare:
                if self.durable:
                    declare_task_queue(channel, self.queue)
                else:
                    declare_hello_queue(channel, self.queue)  # of MQLAB_QUEUE_TYPE
        except pika.exceptions.ChannelClosedByBroker as e:
            raise pika_errors.translate(e, connection._impl.params, self.queue, "declare") from e
        self._channel = channel
        return channel

    def _drop(self) -> None:
        """Forget the connection (closing it if it still looks open, ignoring errors)."""
        connection, self._connection, self._channel = self._connection, None, None
        self._blocked = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def _ready(self) -> BlockingChannel:
        """A live channel: the current one if pika still hears from the broker, else a new one;
        and not blocked, or :class:`~shared.errors.PublisherBlocked` after the bound."""
        channel, connection = self._channel, self._connection
        try:
            if connection is None or channel is None or not channel.is_open:
                raise pika.exceptions.ConnectionWrongStateError("no channel")
            connection.process_data_events(time_limit=0)
        except LOST:
            channel = self._open()
            connection = self._connection
        assert connection is not None
        self._wait_unblocked(lambda: connection.process_data_events(time_limit=0.2))
        return channel

    def publish(self, body: str) -> Envelope:
        """Publish one message; return its envelope once the broker confirmed it.

        Raises:
            shared.errors.MqlabError: see the class docstring.
        """
        envelope = Envelope()
        props = properties(envelope, PERSISTENT if self.durable else TRANSIENT)
        for attempt in (1, 2):
            try:
                channel = self._ready()
            except LOST as e:  # the new connection died at once
                raise pika_errors.translate(e, self._params()) from e
            try:
                publish_confirmed(channel, self.queue, body, props)
                return envelope
            except pika.exceptions.ConnectionBlockedTimeout as e:
                reason = self._blocked or ""
                self._drop()
                raise blocked(reason, self.settings.blocked_timeout, sent=True) from e
            except pika_errors.ConfirmTimeout as e:
                # confirm_deadline dropped the TCP stream: forget the connection without a
                # close handshake (it would wait on the queue, and the stream is gone).
                self._connection = self._channel = None
                self._blocked = None
                raise unconfirmed(self.settings.confirm_timeout, 0, 1) from e
            except pika.exceptions.ChannelClosedByBroker as e:
                self._drop()
                raise pika_errors.translate(e, self._params(), self.queue, "publish") from e
            except LOST as e:
                self._drop()
                if attempt == 2:
                    raise lost_twice(pika_errors.root_cause(e)) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (waiting at most ``MQLAB_BLOCKED_TIMEOUT`` if blocked).

        Raises:
            PublisherBlocked: with confirms off, the broker still blocked the connection, so
                messages written to it may not have been taken.
        """
        connection = self._connection
        reason = self._blocked
        try:
            if connection is not None and connection.is_open:
                connection.close()
        except pika.exceptions.ConnectionBlockedTimeout as e:
            raise blocked(reason or "", self.settings.blocked_timeout, sent=True) from e
        except (pika.exceptions.AMQPError, OSError):
            pass
        finally:
            self._connection = self._channel = None


def publish(
    bodies: Sequence[str],
    *,
    amqp_url: str | None = None,
    queue: str | None = None,
    declare: bool = True,
) -> list[Envelope]:
    """Publish one persistent message per body through a :class:`Producer`; return their
    envelopes.

    Parameters:
        bodies: message texts.
        amqp_url: broker URI; default ``AMQP_URL``.
        queue: target queue; default the work queue.
        declare: declare the durable queue first (as the tutorial does).

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions, 406
            on declare, unroutable, nacked or blocked publish (the message says how many were
            confirmed before).
    """
    with Producer(amqp_url, queue=queue, declare=declare) as producer:
        return producer.publish_all(bodies)


def main() -> int:
    return cli.new_task_main("python -m raw_pika.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
