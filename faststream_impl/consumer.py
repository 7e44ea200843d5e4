"""The machinery under ``faststream_impl/worker.py`` that a tutorial reader need not see.

* **Slots.** FastStream runs every handler as a coroutine on one event loop, and aio-pika
  starts one task per delivery (``aiormq/channel.py``: ``create_task(consumer(message))``), so
  as many handlers run at once as the prefetch lets in. The work itself is blocking (sleep,
  CPU), so it runs on ``concurrency`` slot threads (:class:`Slots`, a ``ThreadPoolExecutor``)
  and never on the event loop, which keeps reading frames and sending heartbeats however long a
  task takes; a blocking call inside the coroutine would stall them, and past the heartbeat
  timeout RabbitMQ drops the connection and the message runs again.
* **Warm shutdown.** FastStream's app stops on SIGTERM and SIGINT: each subscriber stops
  taking messages (a delivery that arrives then is neither started nor acked, and goes back
  to the queue with the channel) and waits up to the broker's ``graceful_timeout`` for the
  handlers in hand, which finish and ack, before it cancels the consumer and closes the
  connection. FastStream's default ``graceful_timeout=15.0`` s cuts a longer task short, and
  ``None`` (or 0) does not wait at all (``MultiLock.wait_release``: ``if timeout:``), so the
  worker sets :data:`GRACEFUL_TIMEOUT`. A handler cut short is cancelled: FastStream 0.7.8's
  ``AcknowledgementMiddleware`` then neither acks nor rejects it (``CancelledError`` returns
  before the ack policy), so RabbitMQ requeues it when the channel closes and it runs again
  (``tests/test_faststream_specific.py`` shows both).
* **Reconnect.** aio-pika's ``RobustConnection`` reconnects after a broker restart every
  ``reconnect_interval`` seconds over the node list
  (:class:`faststream_impl.broker.NodeListConnection`), then restores the channel, its
  ``basic.qos``, the queue and the consumer; after ``MQLAB_RECONNECT_SECONDS`` of failed
  attempts, or at once when RabbitMQ refuses the login, :class:`GiveUp` ends the worker with
  one line and a non-zero exit. A message in hand at that moment cannot be acked
  any more; RabbitMQ redelivers it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiormq.exceptions
from aio_pika.abc import AbstractConnection
from faststream import FastStream

T = TypeVar("T")

GRACEFUL_TIMEOUT = 24 * 3600.0
"""Seconds a stopping worker waits for the tasks in hand (FastStream's ``graceful_timeout``):
a day, i.e. until they are done, like the other workers."""


class Slots:
    """``concurrency`` threads that run the blocking work off the event loop.

    Parameters:
        concurrency: how many tasks run at the same time (``--concurrency``).
        name: the worker's name, for the threads' names.
    """

    def __init__(self, concurrency: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"{name}-slot")

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` on a slot thread; return what it returned (or raise what it
        raised). A cancelled caller does not stop the thread: the work runs to its end."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def close(self) -> None:
        """Wait for the work still running (a cancelled handler's), then free the threads."""
        self._executor.shutdown(wait=True)


def say(line: str) -> None:
    """Print a status line now."""
    print(line, flush=True)


def watch_connection(name: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """The ``on_close`` and ``on_reconnected`` callbacks of ``RabbitBroker``: one status line
    when the connection is lost (aio-pika reconnects by itself) and one when it is back."""

    def on_close(connection: AbstractConnection, error: BaseException | None = None) -> None:
        if error is not None and not isinstance(error, asyncio.CancelledError):  # not our close
            say(f" [!] {name} lost its connection ({type(error).__name__}: {error}); reconnecting")

    def on_reconnected(connection: AbstractConnection) -> None:
        say(f" [*] {name} reconnected to {connection}")

    return on_close, on_reconnected


def on_channel_close(name: str) -> Callable[..., None]:
    """A ``close_callbacks`` entry for the worker's channel: one line when RabbitMQ closes it,
    none when the worker closes it itself (Ctrl+C under ``faststream run`` printed one).

    The usual cause is the delivery acknowledgement timeout (``406 PRECONDITION_FAILED -
    delivery acknowledgement on channel 1 timed out``: a delivery unacked longer than
    ``consumer_timeout``; RabbitMQ docs, "Consumer Acknowledgements"). aio-pika's
    ``RobustChannel`` then opens the channel again and restores the consumer by itself
    (``RobustChannel._on_close``); the unacked messages are redelivered (at-least-once).
    """

    def closed(channel: object, error: BaseException | None = None) -> None:
        # ChannelClosed(None, None) is aiormq's answer to the close-ok of our own close
        # (aiormq/channel.py, _on_close_ok_frame): a stopping worker, not RabbitMQ.
        if isinstance(error, aiormq.exceptions.ChannelClosed) and error.args != (None, None):
            say(
                f" [!] {name}: RabbitMQ closed the channel ({type(error).__name__}: {error}); "
                "the unacked messages go back to the queue; opening a new channel"
            )

    return closed


class GiveUp:
    """Stops the worker when its connection cannot come back (RabbitMQ refuses the login, or
    ``MQLAB_RECONNECT_SECONDS`` of failed attempts): ``main`` then raises :attr:`error`, so a
    supervisor sees a non-zero exit and restarts it.

    Attributes:
        error: the last connection error, once given up; else ``None``.
        app: the app to stop (set once it is built).
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.app: FastStream | None = None

    def __call__(self, error: BaseException) -> None:
        if self.error is None and self.app is not None:
            self.error = error
            self.app.exit()


def flush() -> None:
    """Flush the task lines (``shared.tasks.work`` prints without flushing)."""
    sys.stdout.flush()
