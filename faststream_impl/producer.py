"""The FastStream producer as an object an application keeps open: each publish is confirmed
or raises.

FastStream publishes with ``await broker.publish(...)``; :class:`Producer` runs its own event
loop so the tutorial's programs, the tests and the lab call it like the other implementations'
producers (``with Producer() as p: p.publish("task...")``).

The settings behind the guarantees, each FastStream's or aio-pika's own:

* ``Channel(publisher_confirms=True)`` (FastStream's default, ``MQLAB_CONFIRMS=0`` turns it
  off): ``broker.publish`` returns once the broker acked the message. Its ``timeout=`` bounds
  only writing the frames (aiormq ``basic_publish``), so :class:`Producer` bounds the wait for
  the confirm itself (``MQLAB_CONFIRM_TIMEOUT``).
* ``Channel(on_return_raises=True)``: FastStream's default is ``False``, under which a
  ``mandatory`` message the broker returns (no such queue) is confirmed all the same and
  silently lost; with ``True`` aio-pika raises ``DeliveryError`` for it.
* ``persist=True``: ``delivery_mode=2`` (FastStream's default is ``persist=False``: transient).
* ``mandatory=True`` (FastStream's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiormq.exceptions
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError
from faststream.rabbit import Channel, RabbitBroker

from faststream_impl.broker import (
    BLOCKED_WATCH,
    connect,
    dead_letter_queue,
    declare,
    make_broker,
    plain_queue,
    task_queue,
    translate,
    work_queue,
)
from shared.contract import CONTENT_TYPE, Envelope
from shared.errors import MqlabError, PublisherBlocked, PublishRefused, Unroutable, blocked
from shared.producer import BaseProducer, Failure

T = TypeVar("T")

LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    RuntimeError,
    ConnectionError,
)
"""What aio-pika raises on a connection or channel that died under us (broker restart)."""


BLOCKED_POLL = 0.1
"""Seconds between two looks at the ``connection.blocked`` state while a publish waits."""


class Producer(BaseProducer[Envelope]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``
    (:class:`shared.producer.BaseProducer`: its one confirm / retry / classify loop; each hook
    here runs its coroutine on the producer's own event loop).

    * Each publish returns only once the broker confirmed the message (publisher confirms;
      with ``MQLAB_CONFIRMS=0`` once it is written), else it raises.
    * A connection lost before or during a publish (a broker restart) is replaced by a new
      one and the message published once more with the same message_id (at-least-once); a
      second failure raises.
    * While RabbitMQ blocks publishers (``connection.blocked``: a memory or disk alarm) a publish
      waits at most ``MQLAB_BLOCKED_TIMEOUT`` seconds, then raises
      :class:`~shared.errors.PublisherBlocked` naming the alarm (aiormq itself would hold it
      back until the alarm clears; :class:`~faststream_impl.broker.BlockedWatch` hears it).
    * A confirm (or a queue declare) that does not arrive within ``MQLAB_CONFIRM_TIMEOUT``
      seconds (a quorum queue without a majority) drops the connection and raises
      :class:`~shared.errors.PublishUnconfirmed`; it is not published again.

    Parameters:
        amqp_url: broker URI, or several nodes' URIs joined by ``;``; default ``AMQP_URL``.
        queue: target queue; default the work queue.
        declare, durable: as :class:`~shared.producer.BaseProducer`.
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
        self._loop = asyncio.new_event_loop()
        self._broker: RabbitBroker | None = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def _message(self, body: str) -> Envelope:
        return Envelope()

    def _ready(self) -> None:
        self._run(self._connected())

    async def _connected(self) -> RabbitBroker:
        if self._broker is not None:
            return self._broker
        channel = Channel(publisher_confirms=self.settings.confirms, on_return_raises=True)
        broker = make_broker(self.amqp_url, channel=channel)
        await connect(broker, self.amqp_url)
        self._broker = broker
        BLOCKED_WATCH.watch(broker, self._blocked_changed)
        if self.declare:
            # Bounded like the confirm: a quorum queue without a majority answers neither.
            bound = self.settings.confirm_timeout
            if self.durable:
                dead, work = dead_letter_queue(self.queue, bound), work_queue(self.queue, bound)
                await declare(broker, dead, work)
            else:
                await declare(broker, plain_queue(self.queue, bound))
        return broker

    def _blocked_changed(self, reason: str | None) -> None:
        if reason is None:
            self._on_unblocked()
        else:
            self._on_blocked(reason)

    def _publish_one(self, message: Envelope, body: str) -> None:
        try:
            self._run(self._publish(body, message))
        except PublisherBlocked:
            self._drop()
            raise
        except DeliveryError as e:
            if e.message is not None:  # basic.return: no queue took it
                raise Unroutable(
                    f"message returned unroutable: no queue named '{self.queue}'"
                ) from e
            raise PublishRefused(f"broker refused (nacked) a message for '{self.queue}'") from e

    async def _publish(self, body: str, envelope: Envelope) -> None:
        broker = await self._connected()
        sending = asyncio.ensure_future(self._send(broker, body, envelope))
        blocked_at_start = self._blocked is not None
        started, blocked_since = time.monotonic(), None
        while not (await asyncio.wait({sending}, timeout=BLOCKED_POLL))[0]:
            now = time.monotonic()
            if self._blocked is not None:
                blocked_since = blocked_since or now
                if now - blocked_since > self.blocked_wait:
                    sending.cancel()
                    reason = self._blocked
                    raise blocked(reason, self.blocked_wait, sent=not blocked_at_start)
            else:
                blocked_since = None
            # aiormq's publish timeout bounds writing the frames, not the wait for the confirm.
            if now - started > self.confirm_timeout:
                sending.cancel()
                raise TimeoutError("no publisher confirm")
        sending.result()

    async def _send(self, broker: RabbitBroker, body: str, envelope: Envelope) -> None:
        await broker.publish(
            body.encode(),
            queue=self.queue,
            mandatory=True,
            persist=self.durable,
            message_id=envelope.message_id,
            timestamp=datetime.fromtimestamp(envelope.timestamp, UTC),
            headers=dict(envelope.headers()),
            content_type=CONTENT_TYPE,
            timeout=self.confirm_timeout,
        )

    def _classify(self, error: Exception) -> Failure | MqlabError | None:
        if isinstance(error, TimeoutError):
            return Failure.UNCONFIRMED
        if isinstance(error, aiormq.exceptions.ChannelClosed):
            return translate(error, self.amqp_url, "publish", self.queue)
        if isinstance(error, (*LOST, *CONNECTION_EXCEPTIONS)):
            return Failure.LOST
        return None

    def _cause(self, error: Exception) -> str:
        return f"{type(error).__name__}: {error}"

    def close(self) -> None:
        """Close the connection, then the producer's event loop (after the tasks aio-pika left
        on it, e.g. of a connection RabbitMQ blocks, which cannot close cleanly, are ended)."""
        self._drop()
        for _ in range(3):  # ending a task may schedule aio-pika's close callbacks as new ones
            self._run(asyncio.sleep(0))
            pending = asyncio.all_tasks(self._loop)
            if not pending:
                break
            for task in pending:
                task.cancel()
            self._run(asyncio.wait(pending, timeout=self.settings.connect_timeout))
        self._run(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _drop(self) -> None:
        broker, self._broker = self._broker, None
        self._blocked = None
        if broker is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # it is gone anyway
                self._run(asyncio.wait_for(broker.stop(), self.settings.connect_timeout))
