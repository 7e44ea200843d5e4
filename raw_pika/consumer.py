"""The machinery under ``raw_pika/worker.py`` that a tutorial reader need not see.

* **Slots.** The work runs on ``concurrency`` slot threads (a ``ThreadPoolExecutor``), never on
  the connection's thread, which keeps calling ``process_data_events`` and so keeps sending
  heartbeats however long a task takes. ``basic_ack`` runs on the connection's thread, the
  only one that may use the connection (pika docs, FAQ "Is Pika thread safe?" and "Requesting
  message acknowledgements from another thread"; pika ``examples/basic_consumer_threaded.py``):
  handed back while that thread waits for a full prefetch window, else through
  ``connection.add_callback_threadsafe``, and folded into ``multiple`` acks
  (:mod:`raw_pika.settlements`).
  Work inside pika's callback would block heartbeats: past the heartbeat timeout RabbitMQ drops
  the connection, the ack is lost and the message runs again (pika issues #418, #930).
* **Warm shutdown.** SIGTERM or Ctrl+C: no new message is started, the slots finish and ack the
  ones in hand, then the connection closes; messages prefetched but not started go back to the
  queue.
* **Reconnect.** A lost connection (the broker restarted) is opened again for up to
  ``MQLAB_RECONNECT_SECONDS`` (pika leaves that to the application: pika docs, "Connection
  recovery"), counted from the loss until the worker consumes again: a connection that opens
  and is closed again before its consumer is registered (RabbitMQ's 541 for a new quorum queue
  without a majority, after about 15 s) does not restart the count. A message in hand at that
  moment cannot be acked any more; RabbitMQ redelivers it.
* **A classic queue's home node down.** In a cluster a durable classic queue lives on one node;
  while that node is down or cut off (paused by ``pause_minority``), declaring or consuming the
  queue through another node fails with ``404 NOT_FOUND - home node ... is down or
  inaccessible`` (:func:`shared.errors.home_node_down`). That is not a deleted queue: it comes
  back with its node, so the worker opens a new channel every second, for up to
  ``MQLAB_RECONNECT_SECONDS`` as above.
* **Consumer cancel.** RabbitMQ cancels the consumer when the queue is deleted (RabbitMQ docs,
  "Consumer Cancel Notification"): the worker declares the queue again and goes on.
* **Delivery acknowledgement timeout.** RabbitMQ closes the channel with ``406
  PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out`` when a message stays
  unacked longer than ``consumer_timeout`` (RabbitMQ docs, "Consumer Acknowledgements":
  delivery acknowledgement timeout): one line, a new channel, go on; the message is redelivered
  (at-least-once). RabbitMQ 3.10 checks it on each channel's tick (``channel_tick_interval``,
  60 s by default), so a delivery may stay unacked up to a minute longer.
* **Cannot go on.** Any other channel error (e.g. 403 after permissions were revoked), or
  reconnecting in vain, ends the worker with one line and a non-zero exit code
  (:class:`~shared.errors.WorkerCannotGoOn`, :class:`~shared.errors.AccessRefused`...), so a
  supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from queue import SimpleQueue
from types import FrameType

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from raw_pika.settlements import HANDOFF_WAIT_SECONDS, Delivery, Settlements
from shared import pika_errors
from shared.errors import BrokerUnreachable, HomeNodeDown, WorkerCannotGoOn, home_node_down
from shared.pika_connection import Connected
from shared.pika_errors import root_cause


def is_ack_timeout(error: pika.exceptions.ChannelClosedByBroker) -> bool:
    """Whether RabbitMQ closed the channel because ``consumer_timeout`` expired: ``406
    PRECONDITION_FAILED - delivery acknowledgement on channel N timed out. Timeout value used:
    ... ms`` (RabbitMQ 3.10, ``rabbit_channel:evaluate_consumer_timeout``; other versions say
    "delivery acknowledgement timed out")."""
    text = error.reply_text or ""
    return error.reply_code == 406 and "delivery acknowledgement" in text and "timed out" in text


FLUSH_SECONDS = 0.2
"""How often the connection thread flushes the (buffered) task output."""


def say(line: str) -> None:
    """Print a status line now (stdout is block-buffered for the task lines)."""
    print(line, flush=True)


Handler = Callable[[Delivery], None]
"""Runs one delivery on a slot thread and acks or rejects it (``raw_pika.worker``'s callback)."""
Setup = Callable[[BlockingChannel, Sequence[pika.ConnectionParameters]], None]
"""Declares the queue and sets ``basic.qos`` on a new channel of the connection opened with
those parameters (``raw_pika.worker``)."""


class Consumer:
    """Consume ``queue`` with ``slots`` slot threads until SIGTERM/SIGINT.

    Parameters:
        connect: opens a connection (``raw_pika.broker.connect``).
        setup: prepares each new channel: declare the queue, ``basic_qos``.
        handle: runs one delivery on a slot thread and acks or rejects it.
        queue: the queue to consume.
        slots: how many deliveries run at the same time (``--concurrency``).
        auto_ack: consume with ``auto_ack`` (tutorial 1's mode: no acks at all).
        name: the worker's name, for its status lines.
        reconnect_seconds: how long to try to reconnect after the connection dropped.
        window: the ``basic.qos`` prefetch count ``setup`` sets (0: unlimited). Once that many
            deliveries are unsettled RabbitMQ sends no more until an ack (RabbitMQ docs,
            "Consumer Prefetch"), so the connection's thread waits for the slots to settle
            one instead of going back to pika's I/O loop (:class:`Settlements`).
    """

    def __init__(
        self,
        connect: Callable[[], Connected],
        setup: Setup,
        handle: Handler,
        *,
        queue: str,
        slots: int,
        auto_ack: bool,
        name: str,
        reconnect_seconds: float,
        window: int = 0,
    ) -> None:
        self.connect, self.setup, self.handle = connect, setup, handle
        self.window = 0 if auto_ack else window
        self.queue, self.auto_ack, self.name = queue, auto_ack, name
        self.reconnect_seconds = reconnect_seconds
        self.stopping = threading.Event()
        self.waiting: SimpleQueue[Delivery | None] = SimpleQueue()
        self.in_hand = 0  # handed to the slots and not finished; changed under self.lock
        self.lock = threading.Lock()
        self.failure: BaseException | None = None
        self.consuming = False  # the current connection's consumer is registered
        self.slots = [
            threading.Thread(target=self._slot, name=f"{name}-slot-{i}", daemon=True)
            for i in range(slots)
        ]
        for thread in self.slots:
            thread.start()

    def _slot(self) -> None:
        """A slot thread: run the deliveries handed to it, one at a time."""
        while (delivery := self.waiting.get()) is not None:
            try:
                # Not started when stopping, or when its channel is gone (consumer timeout,
                # lost connection): RabbitMQ requeues it with the channel, so skip it here.
                if not self.stopping.is_set() and delivery.channel_is_open():
                    self.handle(delivery)
            except BaseException as e:  # noqa: BLE001  (reported on the connection's thread)
                self.failure = e
            finally:
                with self.lock:
                    self.in_hand -= 1

    def run(self, connected: Connected) -> int:
        """Consume on ``connected``'s connection until asked to stop; return the exit code (0).

        Raises:
            WorkerCannotGoOn: RabbitMQ closed the channel for a reason other than the delivery
                acknowledgement timeout.
            Exception: whatever a slot's ``handle`` raised (the worker stops; the message in
                hand goes back to the queue with the connection).
            BrokerUnreachable, AccessRefused: reconnecting failed.
        """

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        connection, params = connected.connection, connected.params
        lost_at = 0.0  # when the connection was lost with no consumer registered since
        waiting = False  # for a classic queue's home node, since the last consumer
        try:
            while True:
                try:
                    if self._consume(connection, params):
                        break
                    say(f" [!] {self.name}: consumer cancelled (queue deleted?); declaring again")
                except pika.exceptions.AMQPConnectionError as e:  # broker restarted, network
                    if self.stopping.is_set():
                        break
                    if self.consuming or not lost_at:
                        lost_at = time.monotonic()
                        waiting = False
                    self.consuming = False
                    deadline = lost_at + self.reconnect_seconds
                    if time.monotonic() > deadline:
                        error = pika_errors.translate(e, params, self.queue)
                        raise type(error)(
                            f"{error} (gave up after {self.reconnect_seconds:g} s of "
                            "reconnecting without consuming)"
                        ) from e
                    say(f" [!] {self.name} lost its connection ({root_cause(e)}); reconnecting")
                    try:
                        reconnected = self._reconnect(deadline)
                        connection, params = reconnected.connection, reconnected.params
                    except KeyboardInterrupt:  # Ctrl+C or SIGTERM while reconnecting
                        if not self.stopping.is_set():
                            raise
                        break  # a clean stop: nothing in hand, exit 0 like any stop
                except (HomeNodeDown, pika.exceptions.ChannelClosedByBroker) as e:
                    if isinstance(e, HomeNodeDown) or home_node_down(e.reply_code, e.reply_text):
                        if self.stopping.is_set():
                            break  # a clean stop: nothing in hand, exit 0 like any stop
                        if self.consuming or not lost_at:  # the queue is back with its node
                            lost_at = time.monotonic()
                        if self.consuming or not waiting:
                            say(f" [!] {self.name}: {e}; waiting for it")
                        self.consuming, waiting = False, True
                        if time.monotonic() > lost_at + self.reconnect_seconds:
                            raise HomeNodeDown(
                                f"{e} (gave up after {self.reconnect_seconds:g} s)"
                            ) from e
                        with contextlib.suppress(pika.exceptions.AMQPConnectionError):
                            connection.sleep(1.0)  # a dropped connection: the next channel()
                        if self.stopping.is_set():
                            break
                        continue
                    if is_ack_timeout(e):
                        say(
                            f" [!] {self.name}: RabbitMQ closed the channel ({e.reply_code} "
                            f"{e.reply_text}); the unacked messages go back to the queue; "
                            "opening a new channel"
                        )
                        continue
                    if e.reply_code != 406:  # 403 ACCESS_REFUSED: no read permission; 404...
                        raise pika_errors.translate(e, params, self.queue, "consume") from e
                    raise WorkerCannotGoOn(
                        f"RabbitMQ closed the channel ({e.reply_code} {e.reply_text})"
                    ) from e
        finally:
            self.stopping.set()
            for _ in self.slots:
                self.waiting.put(None)
            sys.stdout.flush()
        if connection.is_open:
            connection.close()
        print(f" [*] {self.name} stopped", flush=True)
        return 0

    def _consume(
        self, connection: pika.BlockingConnection, params: Sequence[pika.ConnectionParameters]
    ) -> bool:
        """Consume on a new channel until asked to stop (True) or cancelled by RabbitMQ (False)."""
        cancelled = False

        def on_cancel(method: object) -> None:
            nonlocal cancelled
            cancelled = True

        channel = connection.channel()
        settlements = Settlements(connection, channel)

        def on_message(
            ch: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
        ) -> None:
            if not self.auto_ack:
                settlements.delivered(method.delivery_tag)  # unacked until settled, or requeued
            if self.stopping.is_set():
                return  # not started: closing the channel requeues it
            with self.lock:
                self.in_hand += 1
            self.waiting.put(Delivery(body, method, props, settlements, self.auto_ack))
            if 0 < self.window <= settlements.unsettled():
                settlements.wait(HANDOFF_WAIT_SECONDS)  # the window is full: nothing else to do

        self.setup(channel, params)
        channel.add_on_cancel_callback(on_cancel)
        channel.basic_consume(self.queue, on_message, auto_ack=self.auto_ack)
        self.consuming = True
        print(
            f" [*] {self.name} waiting for messages on '{self.queue}'. To exit press CTRL+C",
            flush=True,
        )

        def tick() -> None:  # on the connection's thread, every FLUSH_SECONDS
            if not channel.is_open:
                return
            self._flush()
            if self.stopping.is_set() or self.failure is not None:
                channel.stop_consuming()  # cancel the consumer: no new deliveries
            else:
                connection.call_later(FLUSH_SECONDS, tick)

        connection.call_later(FLUSH_SECONDS, tick)
        # Returns after stop_consuming or a consumer cancel by RabbitMQ; raises
        # ChannelClosedByBroker when RabbitMQ closes the channel, AMQPConnectionError when the
        # connection drops (pika docs, BlockingChannel.start_consuming).
        channel.start_consuming()
        if self.failure is not None:
            raise self.failure
        if cancelled and not self.stopping.is_set():
            channel.close()
            return False
        # Warm shutdown: let the slots finish what they started; their acks go out from here.
        while self.in_hand:
            connection.process_data_events(time_limit=0.05)
            settlements.send()
            self._flush()
            if self.failure is not None:
                raise self.failure
        settlements.send()  # acks queued by the last slot
        connection.process_data_events(time_limit=0)
        return True

    def _flush(self) -> None:
        """Write out the buffered task output."""
        sys.stdout.flush()

    def _reconnect(self, deadline: float) -> Connected:
        """Try to connect every half second until ``deadline`` (``time.monotonic()``).

        Raises:
            BrokerUnreachable: still no connection at the deadline.
            AccessRefused: the broker now refuses the credentials (lost permissions).
            KeyboardInterrupt: asked to stop meanwhile.
        """
        while True:
            try:
                return self.connect()
            except BrokerUnreachable as e:
                if time.monotonic() > deadline:
                    raise BrokerUnreachable(
                        f"{e} (gave up reconnecting after {self.reconnect_seconds:g} s)"
                    ) from e
            if self.stopping.is_set():
                raise KeyboardInterrupt
            time.sleep(0.5)
