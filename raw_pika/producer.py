"""The hand-written pika producer: :class:`Producer`, the one ``send`` and ``new_task`` use and
an application keeps open for hours.

Every message is published with ``mandatory`` under publisher confirms, so a message the
broker cannot route or store is an error, never silence (RabbitMQ docs, "Consumer
Acknowledgements and Publisher Confirms"). The retry and the failure classes are
:class:`shared.producer.BaseProducer`'s; this module is pika's hooks.
"""

from __future__ import annotations

import contextlib

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from raw_pika.broker import connect, declare_hello_queue, declare_task_queue, task_queue
from shared import pika_connection, pika_errors
from shared.contract import CONTENT_TYPE, PERSISTENT, TRANSIENT, Envelope
from shared.errors import MqlabError, blocked
from shared.pika_connection import LOST
from shared.producer import BaseProducer, Failure


def properties(envelope: Envelope, delivery_mode: int = PERSISTENT) -> pika.BasicProperties:
    """The AMQP properties of the message contract (:mod:`shared.contract`)."""
    return pika.BasicProperties(
        message_id=envelope.message_id,
        timestamp=envelope.timestamp,
        content_type=CONTENT_TYPE,
        delivery_mode=delivery_mode,
        headers=envelope.headers(),
    )


class Producer(BaseProducer[Envelope]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``.

    * Each :meth:`publish` returns only once the broker confirmed the message (publisher
      confirms; with ``MQLAB_CONFIRMS=0`` once it is written), else it raises.
    * Before each publish it lets pika read what arrived meanwhile
      (``process_data_events(0)``): heartbeats are answered, and a connection that died while
      the application was idle (longer than the heartbeat timeout, a broker restart) is noticed
      and replaced by a new one.
    * While RabbitMQ blocks publishers a publish waits at most ``MQLAB_BLOCKED_TIMEOUT``
      seconds (pika's ``blocked_connection_timeout``).
    * pika's blocking ``basic_publish`` waits for its confirm without a deadline:
      :func:`shared.pika_connection.confirm_deadline` bounds it by ``MQLAB_CONFIRM_TIMEOUT``.

    Parameters:
        amqp_url, queue, declare, durable: as :class:`~shared.producer.BaseProducer` (the
            queue defaults to the work queue).
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        *,
        queue: str | None = None,
        declare: bool = True,
        durable: bool = True,
    ) -> None:
        super().__init__(amqp_url, queue=queue or task_queue(), declare=declare, durable=durable)
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._params: list[pika.ConnectionParameters] = []

    def _message(self, body: str) -> Envelope:
        return Envelope()

    def _open(self) -> BlockingChannel:
        self._drop()
        connected = connect(self.amqp_url)
        connection, self._params = connected.connection, connected.params
        self._connection = connection
        pika_connection.watch_blocked(connection, self._on_blocked, self._on_unblocked)
        try:
            channel = connection.channel()
            if self.settings.confirms:
                channel.confirm_delivery()
            if self.declare:
                if self.durable:
                    declare_task_queue(channel, self.queue, self._params)
                else:
                    declare_hello_queue(channel, self.queue, self._params)  # MQLAB_QUEUE_TYPE
        except pika.exceptions.ChannelClosedByBroker as e:
            raise pika_errors.translate(e, self._params, self.queue, "declare") from e
        self._channel = channel
        return channel

    def _ready(self) -> None:
        connection = self._connection
        try:
            if connection is None or self._channel is None or not self._channel.is_open:
                raise pika.exceptions.ConnectionWrongStateError("no channel")
            connection.process_data_events(time_limit=0)
        except LOST:
            try:
                self._open()
            except LOST as e:  # the new connection died at once
                raise pika_errors.translate(e, self._params) from e
            connection = self._connection
        assert connection is not None
        self._wait_unblocked(lambda: connection.process_data_events(time_limit=0.2))

    def _publish_one(self, message: Envelope, body: str) -> None:
        assert self._channel is not None and self._connection is not None
        props = properties(message, PERSISTENT if self.durable else TRANSIENT)
        try:
            with pika_connection.confirm_deadline(self._connection, self.confirm_timeout):
                self._channel.basic_publish(
                    exchange="",
                    routing_key=self.queue,
                    body=body.encode(),
                    properties=props,
                    mandatory=True,
                )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
            raise pika_errors.translate(e, self._params, self.queue, "publish") from e

    def _classify(self, error: Exception) -> Failure | MqlabError | None:
        return pika_connection.classify(error, self._params, self.queue)

    def _cause(self, error: Exception) -> str:
        return pika_errors.root_cause(error)

    def _drop(self) -> None:
        """Forget the connection (closing it if it still looks open, ignoring errors)."""
        connection, self._connection, self._channel = self._connection, None, None
        self._blocked = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def _forget(self) -> None:
        # confirm_deadline dropped the TCP stream: no close handshake.
        self._connection = self._channel = None
        self._blocked = None

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
