"""Celery tasks wrapping the shared task catalogue (:mod:`shared.tasks`); no logic of their own.

Each execution of ``work`` is written to the journal (``MQLAB_JOURNAL``) with the message's
message_id (the Celery task id), the AMQP ``redelivered`` flag, which Celery passes on in
``request.delivery_info["redelivered"]``, and the precise publish time from the contract header
(:data:`shared.contract.PUBLISHED_AT_HEADER`), which Celery hands to the task as part of the
request's message headers.

Every task is a :class:`ParkingTask`: arguments that do not fit are parked without an attempt,
and a task that keeps raising runs :data:`shared.poison.MAX_ATTEMPTS` times in the pool process
(each execution journaled), then its message is rejected without requeue and so parked in
``<queue>.dead`` (``task_acks_on_failure_or_timeout=False``, :mod:`celery_impl.broker`).
Celery's own ``retry`` is not used: it publishes a new message whose ``retries`` header the
message itself carries (so a message could raise its own bound), and its countdown makes an
ETA message that holds a prefetch slot.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, replace
from typing import Any

from celery import Task

from celery_impl import consumer, stopping  # noqa: F401  (stopping: its signal handlers)
from celery_impl.broker import app
from shared import poison, settings
from shared import tasks as catalogue
from shared.contract import PUBLISHED_AT_HEADER, published_at_from
from shared.errors import MqlabError
from shared.journal import JournalWriter


@dataclass(frozen=True)
class WorkOptions:
    """What the ``work`` task needs from its worker, read once.

    Attributes:
        dot_seconds: seconds per ``.`` (``MQLAB_DOT_SECONDS``).
        slowdown: this worker's work-time factor (``MQLAB_SLOWDOWN`` or ``--slowdown``).
        worker_name: the name written into the journal (``MQLAB_WORKER_NAME`` or ``--name``).
        journal: the journal path (``MQLAB_JOURNAL``), or ``None``.
    """

    dot_seconds: float
    slowdown: float
    worker_name: str
    journal: str | None


_s = settings.load()
options = WorkOptions(_s.dot_seconds, _s.slowdown, _s.worker_name, _s.journal)
"""Read from the environment at import (what ``celery -A celery_impl worker`` sees);
``python -m celery_impl.worker`` replaces it with its options through :func:`configure` before the
pool starts, so prefork children inherit it."""

_writers: dict[int, JournalWriter] = {}


def configure(*, slowdown: float, worker_name: str) -> None:
    """Set this worker's options once, before the pool starts (``celery_impl.worker``)."""
    global options
    options = replace(options, slowdown=slowdown, worker_name=worker_name)


def journal() -> JournalWriter:
    """This process's journal writer, opened on first use.

    One per process id: a prefork pool child must not share its parent's SQLite connection (the
    writer keeps one connection per thread, for the threads pool).
    """
    pid = os.getpid()
    writer = _writers.get(pid)
    if writer is None:
        writer = JournalWriter(options.journal, impl="celery", worker=options.worker_name)
        _writers.clear()
        _writers[pid] = writer
    return writer


def _delivery(task: Task) -> dict[str, Any]:
    """What the journal needs from the request of the message being executed."""
    request = task.request
    info = request.delivery_info or {}
    return {
        "message_id": request.id or "",
        "redelivered": bool(info.get("redelivered")),
        "published_at": published_at_from({PUBLISHED_AT_HEADER: request.get(PUBLISHED_AT_HEADER)}),
    }


class ParkingTask(Task):  # type: ignore[misc]
    """A Celery task whose message is parked, with one line, when it cannot be processed.

    Celery's tracer calls a task's own ``__call__`` (``celery.app.trace.build_tracer``). The
    exceptions it raises are in ``throws``, so Celery logs them as one INFO line without a
    traceback (Celery docs, ``Task.throws``), and the failure rejects the message
    (``task_acks_on_failure_or_timeout=False``).
    """

    throws = (poison.Unprocessable, poison.GaveUp)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            inspect.signature(self.run).bind(*args, **kwargs)
        except TypeError as e:
            error = poison.Unprocessable(f"arguments do not fit {self.name}: {e}")
            raise self._parked(error) from e
        try:
            return super().__call__(*args, **kwargs)
        except Exception as e:
            raise self._parked(poison.GaveUp(poison.describe(e))) from e

    def _parked(self, error: Exception) -> Exception:
        info = self.request.delivery_info or {}
        parked_in = consumer.dead_letter_queue(info.get("routing_key"))
        poison.report(self.request.id, parked_in, poison.describe(error))
        return error


@app.task(bind=True, base=ParkingTask, name="celery_impl.hello")
def hello(self: Task, text: str) -> str:
    """Tutorial 1: print `` [x] Received <text>`` (:func:`shared.tasks.hello`)."""
    return catalogue.hello(text)


class WorkTask(ParkingTask):
    """The work task's class: it refuses ``eta``/``countdown`` at the producer; the worker parks
    an ETA message that arrives anyway (:mod:`celery_impl.admission`), so no ETA message takes
    a prefetch-1 worker's only slot."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """``Task.apply_async`` without ``eta`` or ``countdown``.

        Raises:
            MqlabError: ``eta`` or ``countdown`` was given.
        """
        if options.get("eta") is not None or options.get("countdown") is not None:
            raise MqlabError(
                "celery_impl.work takes no eta/countdown: a prefetch-1 worker would hold the "
                "message unacked until then and serve nothing behind it; schedule it elsewhere "
                "and publish it when due"
            )
        return super().apply_async(args, kwargs, **options)


@app.task(bind=True, name="celery_impl.work", base=WorkTask)
def work(self: Task, body: str) -> float:
    """Tutorial 2: one unit of work per ``.`` in ``body`` (:func:`shared.tasks.work`).

    Work time is ``MQLAB_DOT_SECONDS`` per dot times this worker's ``MQLAB_SLOWDOWN``.
    """

    def once() -> float:
        with journal().run(task="work", **_delivery(self)):
            return catalogue.work(body, options.dot_seconds, options.slowdown)

    return poison.run_attempts(once)  # a task that raises: MAX_ATTEMPTS executions
