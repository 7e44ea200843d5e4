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
"""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from dramatiq import Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name, xq_name
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import SkipMessage

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


MESSAGE_OPTIONS_WE_OWN = ("max_retries", "min_backoff", "max_backoff", "retry_when", "throws",
                          "on_retry_exhausted", "time_limit", "max_age")  # fmt: skip
"""Options Dramatiq reads from the message before the actor's (``Retries``, ``TimeLimit``,
``AgeLimit``, the worker's ``throws``): a message carrying them could raise its own retry bound
or trigger another actor. They are dropped; the actor's and our middleware's settings apply."""


class ParkPoison(Middleware):
    """Park a message that can never run, and keep every bound in our hands.

    Dramatiq already dead-letters to ``.XQ`` a body that does not decode, a message for an
    unknown actor, and one whose retries are exhausted (``message.fail()`` -> ``basic_nack``
    without requeue). This middleware adds, before the actor runs:

    * arguments that do not fit the actor's signature: failed at once (no attempt, no retry),
      where Dramatiq would retry the ``TypeError`` ``max_retries`` times;
    * options a message must not set (:data:`MESSAGE_OPTIONS_WE_OWN`) are dropped, and its
      ``retries`` count is made a non-negative integer (a message with ``max_retries: 15`` ran
      15 times; one with ``retries: "x"`` made ``Retries`` raise, and the message was acked);
    * one line on stderr for every message parked (``after_nack``).

    It must come before :class:`JournalMiddleware` in the stack: a skipped message is not run,
    so it gets no journal row.
    """

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        options = message.options
        for key in MESSAGE_OPTIONS_WE_OWN:
            options.pop(key, None)
        retries = options.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            options["retries"] = 0
        try:
            actor = broker.get_actor(message.actor_name)
            inspect.signature(actor.fn).bind(*message.args, **message.kwargs)
        except (ActorNotFound, TypeError) as e:
            message.stuff_exception(poison.Unprocessable(poison.describe(e)))
            message.fail()
            raise SkipMessage(f"cannot run: {poison.describe(e)}") from e

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        error = message._exception  # set by the worker for the exception it caught
        why = poison.describe(error) if error is not None else "failed"
        poison.report(message.message_id, xq_name(q_name(message.queue_name)), why)
