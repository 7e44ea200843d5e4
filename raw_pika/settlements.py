"""How a slot's ack or reject reaches the connection's thread: :class:`Delivery` (what a slot
holds) and :class:`Settlements` (what the connection's thread sends), under
:mod:`raw_pika.consumer`.

pika's ``BlockingConnection`` may only be used from the thread that runs it; another thread asks
it for a call with ``connection.add_callback_threadsafe`` (pika docs, FAQ "Is Pika thread
safe?"; pika ``examples/basic_consumer_threaded.py``).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties


@dataclass
class Delivery:
    """One message handed to a slot: its body, its AMQP method and properties, and the means to
    acknowledge it from the slot's thread.

    Attributes:
        body: the message body, bytes as delivered.
        method: pika's ``Basic.Deliver`` (``delivery_tag``, ``redelivered``).
        props: the message properties (``message_id``, ``headers``, ``timestamp``).
    """

    body: bytes
    method: Basic.Deliver
    props: BasicProperties
    _settlements: Settlements
    _auto_ack: bool

    def channel_is_open(self) -> bool:
        """Whether the channel it came on is still open (else its ack cannot be sent)."""
        return bool(self._settlements.channel.is_open)

    def ack(self) -> None:
        """``basic.ack`` this delivery, on the connection's thread (no-op under auto-ack)."""
        if not self._auto_ack:
            self._settlements.add(self.method.delivery_tag, ack=True)

    def reject(self, requeue: bool = False) -> None:
        """``basic.reject`` this delivery (dead-lettered if the queue has a dead-letter
        exchange, else dropped; ``requeue=True`` puts it back), on the connection's thread."""
        if not self._auto_ack:
            self._settlements.add(self.method.delivery_tag, ack=False, requeue=requeue)


HANDOFF_WAIT_SECONDS = 0.05
"""How long the connection's thread waits for a busy slot to settle, instead of going back to
pika's I/O loop at once (:meth:`Settlements.wait`). Short against any heartbeat timeout (pika's
heartbeat frames go out only from that loop), long against a zero-work task (~0.2 ms)."""


class Settlements:
    """The acks and rejects the slots asked for on one channel, sent by the connection's thread.

    A slot queues its ack here. Two ways bring it to the connection's thread:

    * **Hand-back.** When every slot is busy and none has more waiting, the connection's
      thread has nothing to do until a slot settles: it waits for that on a condition variable
      (:meth:`wait`, at most :data:`HANDOFF_WAIT_SECONDS`) and sends the ack itself. A
      zero-work task at prefetch 1 thus costs two thread switches, not the wake-up of pika's
      I/O loop through its interrupt pipe.
    * **Wake-up.** Otherwise (a task longer than the wait, or slots with a backlog) the first
      ack queued wakes the I/O loop with ``connection.add_callback_threadsafe``, which then
      sends every ack queued meanwhile: one wake-up per batch, not per message.

    Either way the acks go out in delivery-tag order, folded into one ``basic.ack`` with
    ``multiple=True`` up to the highest tag below which every delivery is settled (AMQP 0-9-1
    ``basic.ack`` ``multiple``; RabbitMQ docs, "Consumer Acknowledgements": acknowledging
    multiple deliveries at once). A delivery is acked only after its own work, as before.

    Parameters:
        connection: the channel's connection.
        channel: the channel the deliveries came on (acks are only valid there).
    """

    def __init__(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        self.connection, self.channel = connection, channel
        self._pending: list[tuple[int, bool, bool]] = []  # (tag, ack, requeue)
        self._unsettled: deque[int] = deque()  # delivered tags, in order; connection's thread
        self._changed = threading.Condition(threading.Lock())
        self._waiting = False  # the connection's thread waits in wait()

    def unsettled(self) -> int:
        """How many deliveries on the channel are not settled yet (connection's thread)."""
        return len(self._unsettled)

    def delivered(self, tag: int) -> None:
        """Note a delivery that is to be settled (connection's thread, in delivery order)."""
        self._unsettled.append(tag)

    def add(self, tag: int, ack: bool, requeue: bool = False) -> None:
        """Queue an ack (``ack=True``) or a reject of ``tag`` for the connection's thread."""
        with self._changed:
            self._pending.append((tag, ack, requeue))
            if self._waiting:
                self._changed.notify()
                return
            wake = len(self._pending) == 1
        if wake:
            try:
                self.connection.add_callback_threadsafe(self.send)
            except pika.exceptions.AMQPError:  # the connection is gone (broker restart)
                lost_ack(tag, "its connection was lost")

    def wait(self, timeout: float) -> None:
        """On the connection's thread: wait up to ``timeout`` seconds until a slot settles a
        delivery, then send what is pending."""
        with self._changed:
            if not self._pending:
                self._waiting = True
                try:
                    self._changed.wait(timeout)
                finally:
                    self._waiting = False
        self.send()

    def send(self) -> None:
        """On the connection's thread: send the pending rejects and acks (see the class)."""
        with self._changed:
            batch, self._pending = self._pending, []
        if not batch:
            return
        if not self.channel.is_open:
            for tag, _, _ in batch:
                lost_ack(tag, "its channel was closed")
            return
        acked: set[int] = set()
        for tag, ack, requeue in batch:
            if ack:
                acked.add(tag)
            else:
                self.channel.basic_reject(tag, requeue=requeue)
                self._unsettled.remove(tag)
        folded, highest = 0, 0
        while self._unsettled and self._unsettled[0] in acked:
            highest = self._unsettled.popleft()
            acked.discard(highest)
            folded += 1
        if folded:
            self.channel.basic_ack(highest, multiple=folded > 1)
        for tag in sorted(acked):  # behind a delivery still in a slot
            self.channel.basic_ack(tag)
            self._unsettled.remove(tag)


def lost_ack(tag: int, why: str) -> None:
    """Say that delivery ``tag`` could not be acknowledged; RabbitMQ delivers it again."""
    print(
        f" [!] could not ack delivery {tag}: {why}; RabbitMQ delivers it again",
        file=sys.stderr,
        flush=True,
    )
