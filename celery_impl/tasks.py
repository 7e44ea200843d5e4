"""Celery tasks wrapping the shared task catalogue (:mod:`shared.tasks`); no logic of their own.

Each execution of ``work`` is written to the journal (``MQLAB_JOURNAL``) with the message's
message_id (the Celery task id), the AMQP ``redelivered`` flag, which Celery passes on in
``request.delivery_info["redelivered"]``, and the precise publish time from the contract header
(:data:`shared.contract.PUBLISHED_AT_HEADER`), which Celery hands to the task as part of the
request's message headers.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Task

from celery_impl.settings import app
from shared import settings
from shared import tasks as catalogue
from shared.contract import PUBLISHED_AT_HEADER, published_at_from
from shared.journal import JournalWriter

_writers: dict[int, JournalWriter] = {}


def journal() -> JournalWriter:
    """This process's journal writer, opened on first use.

    One per process id: a prefork pool child must not share its parent's SQLite connection.
    """
    pid = os.getpid()
    writer = _writers.get(pid)
    if writer is None:
        s = settings.load()
        writer = JournalWriter(s.journal, impl="celery", worker=s.worker_name)
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


@app.task(bind=True, name="celery_impl.hello")
def hello(self: Task, text: str) -> str:
    """Tutorial 1: print `` [x] Received <text>`` (:func:`shared.tasks.hello`)."""
    return catalogue.hello(text)


@app.task(bind=True, name="celery_impl.work")
def work(self: Task, body: str) -> float:
    """Tutorial 2: one unit of work per ``.`` in ``body`` (:func:`shared.tasks.work`).

    Work time is ``MQLAB_DOT_SECONDS`` per dot times this worker's ``MQLAB_SLOWDOWN``.
    """
    s = settings.load()
    with journal().run(task="work", **_delivery(self)):
        return catalogue.work(body, s.dot_seconds, s.slowdown)
