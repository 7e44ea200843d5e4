"""Three small Dramatiq middlewares that make the worker honour mqlab's contract.

* :class:`JournalMiddleware` writes one journal row per execution with what Dramatiq does not
  hand to actors: the AMQP ``redelivered`` flag of the delivery (kept by Dramatiq's RabbitMQ
  consumer on the ``_RabbitmqMessage`` proxy, from pika's ``Basic.Deliver`` method frame), the
  Dramatiq ``message_id`` and the publish time (``message_timestamp``, milliseconds).
* :class:`PrefetchPerThread` makes the prefetch equal to the worker's thread count, so the
  native ``dramatiq dramatiq_impl.actors -p 1 -t 1`` gives RabbitMQ's fair dispatch (prefetch 1)
  instead of Dramatiq's default of 2 x threads.
* :class:`ShutdownOnce` keeps a group-wide SIGTERM a warm shutdown (see its docstring).
* :class:`ParkPoison` parks what can never run and keeps every retry bound ours
  (:mod:`shared.poison`).
* :class:`RetryUntilPublished` keeps a failed message unacked until its retry is published.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import pika.exceptions
from dramatiq import Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name, xq_name
from dramatiq.errors import ActorNotFound, BrokerError
from dramatiq.middleware import Retries, SkipMessage

from shared import poison, settings
from shared.contract import published_at_from_millis
from shared.journal import JournalWriter

IMPL = "dramatiq"


class JournalMiddleware(Middleware):
    """Record every execution in the journal (``MQLAB_JOURNAL``), if one is configured.

    One :class:`~shared.journal.JournalWriter` per worker thread, because a SQLite connection
    may only be used by the thread that opened it.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _writer(self) -> JournalWriter:
        writer: JournalWriter | None = getattr(self._local, "writer", None)
        if writer is None:
            s = settings.load()
            writer = self._local.writer = JournalWriter(s.journal, impl=IMPL, worker=s.worker_name)
        return writer

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        run = self._writer().run(
            message_id=message.message_id,
            task=message.actor_name,
            # Set by dramatiq.brokers.rabbitmq._RabbitmqConsumer from method.redelivered.
            redelivered=bool(getattr(message, "redelivered", False)),
            # Any JSON value in a foreign message: never raises (a NaN or a string is recorded
            # as 0.0, "unknown"), so the row is written and the task still runs.
            published_at=published_at_from_millis(message.message_timestamp),
        )
        run.__enter__()
        self._local.run = run

    def _finish(self, exception: BaseException | None) -> None:
        run = getattr(self._local, "run", None)
        if run is not None:
            self._local.run = None
            run.__exit__(type(exception) if exception else None, exception, None)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(exception)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._finish(None)


class PrefetchPerThread(Middleware):
    """Prefetch = worker threads, unless ``dramatiq_queue_prefetch`` says otherwise.

    Dramatiq's ``Worker`` prefetches ``dramatiq_queue_prefetch`` messages per queue, or
    ``2 x worker_threads`` when that variable is unset or ``0`` (``dramatiq/worker.py``). A
    single-thread worker would then hold a second message while the first runs, which defeats
    fair dispatch (RabbitMQ tutorial 2). Consumers are created in ``Worker.start()`` after the
    ``before_worker_boot`` hook, so setting ``queue_prefetch`` here takes effect.
    """

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        # Dramatiq reads the variable in lower case (dramatiq/worker.py).
        if int(os.environ.get("dramatiq_queue_prefetch") or 0) <= 0:  # noqa: SIM112
            worker.queue_prefetch = worker.worker_threads


class ShutdownOnce(Middleware):
    """Treat SIGTERMs arriving within :attr:`window` seconds of the first one as that one.

    Dramatiq's worker process stops gracefully on its first SIGTERM and exits at once, killing
    the task in hand, on a second (``dramatiq/cli.py``, ``worker_process.termhandler``). The main
    process forwards every SIGTERM to its worker processes, so a SIGTERM sent to the whole
    process group (``kill -TERM -<pgid>``, systemd's ``KillMode=control-group``) reaches a worker
    process twice within milliseconds and would hard-kill it. A repeat after the window still
    kills, as Dramatiq documents.
    """

    window = 2.0

    def after_process_boot(self, broker: Broker) -> None:
        original = signal.getsignal(signal.SIGTERM)
        if not callable(original):
            return
        first: list[float] = []

        def handler(signum: int, frame: FrameType | None) -> None:
            now = time.monotonic()
            if first and now - first[0] < self.window:
                return
            first.append(now)
            original(signum, frame)

        signal.signal(signal.SIGTERM, handler)


class ParkPoison(Middleware):
    """Park a message that can never run, and keep every bound in our hands.

    Dramatiq already dead-letters to ``.XQ`` a body that does not decode, a message for an
    unknown actor, and one whose retries are exhausted (``message.fail()`` -> ``basic_nack``
    without requeue). This middleware adds, before the actor runs:

    * an actor of another queue (``hello`` on the work queue), and arguments that do not fit
      the actor's signature: failed at once (no attempt, no retry),
      where Dramatiq would retry the ``TypeError`` ``max_retries`` times (the options a message
      may set at all are decided earlier, :mod:`dramatiq_impl.admission`);
    * one line on stderr for every message parked (``after_nack``).

    It must come before :class:`JournalMiddleware` in the stack: a skipped message is not run,
    so it gets no journal row.
    """

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            actor = broker.get_actor(message.actor_name)
            if actor.queue_name != q_name(message.queue_name):
                raise TypeError(
                    f"actor {actor.actor_name!r} does not take messages from this queue"
                )
            inspect.signature(actor.fn).bind(*message.args, **message.kwargs)
        except (ActorNotFound, TypeError) as e:
            message.stuff_exception(poison.Unprocessable(poison.describe(e)))
            message.fail()
            raise SkipMessage(f"cannot run: {poison.describe(e)}") from e

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        error = message._exception  # set by the worker for the exception it caught
        why = poison.describe(error) if error is not None else "failed"
        poison.report(message.message_id, xq_name(q_name(message.queue_name)), why)


class RetryUntilPublished(Retries):
    """Dramatiq's ``Retries``, except that a retry that cannot be published loses nothing.

    ``Retries`` republishes a failed message (to ``.DQ``, with its backoff) from
    ``after_process_message``; when that publish fails (a memory or disk alarm blocks the
    connection past ``MQLAB_BLOCKED_TIMEOUT``, the connection is lost), Dramatiq logs
    "Unexpected failure in after_process_message" and acks the message: neither retried nor
    parked. Here the publish is tried again every :attr:`pause` seconds, the message unacked
    meanwhile (if the worker stops or its connection closes first, RabbitMQ redelivers it).
    A publish that fails for another reason (not the broker's connection) fails the message,
    which parks it in ``.XQ`` (:class:`ParkPoison` says so).

    In the worker, a publish blocked by an alarm waits for the alarm to clear (no
    ``blocked_connection_timeout``): RabbitMQ takes the message that a connection publishes as
    it blocks, but holds its confirm, so giving up and publishing again would put one more copy
    of the retry in ``.DQ`` for every attempt. The producers keep their bound
    (``MQLAB_BLOCKED_TIMEOUT``).
    """

    pause = 1.0

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        params = broker.parameters  # type: ignore[attr-defined]
        for node in params if isinstance(params, list) else [params]:
            node.blocked_connection_timeout = None

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        super().after_process_message(
            _Republishing(broker, message, self.pause),
            message,
            result=result,
            exception=exception,
        )


class _Republishing:
    """``broker`` for :class:`RetryUntilPublished`: its ``enqueue`` tries until it succeeds."""

    def __init__(self, broker: Broker, message: MessageProxy, pause: float) -> None:
        self._broker = broker
        self._message = message
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        said = False
        while True:
            try:
                return self._broker.enqueue(message, delay=delay)
            except (BrokerError, pika.exceptions.AMQPError, OSError) as e:  # the broker's side
                if not said:
                    print(
                        f" [!] the retry of message {message.message_id} cannot be published "
                        f"({poison.describe(e)}); it stays unacked, trying again every "
                        f"{self._pause:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    said = True
                time.sleep(self._pause)  # a backoff between publishes, not synchronisation
            except Exception as e:  # not the connection: this message cannot be retried
                self._message.stuff_exception(poison.Unprocessable(poison.describe(e)))
                self._message.fail()
                return None
