"""What of a Celery task message the worker honours: the one place that decides.

A worker runs the tutorial's work: the task a message names, with its arguments. Every other
field Celery would read from a message (Celery docs, "Message Protocol"; read in
``celery/worker/request.py`` and ``celery/worker/strategy.py``) is either set here to a value the
project chooses, or a reason to park the message (reject without requeue: RabbitMQ
dead-letters it to ``<queue>.dead``, :mod:`shared.poison`). Nothing a message carries steers the
worker beyond that. The table (protocol 2 headers, and the body's ``embed``):

====================================  ==========================================================
field                                 here
====================================  ==========================================================
``task``, ``id``                      honoured; must be non-empty strings, and the task one of
                                      this project's, on its own queue (:func:`queue_of`); else
                                      parked (Celery also registers built-in tasks such as
                                      ``celery.group``, which publish further tasks)
``lang``, ``root_id``, ``parent_id``, passed on (names and text for Celery's log lines; they
``argsrepr``, ``kwargsrepr``,         steer nothing)
``origin``
``eta`` (``countdown``)               parked (:data:`ETA_REFUSED`): the worker would hold the
                                      message unacked until then, in its only prefetch slot
``expires``                           parked if past or unreadable (where Celery acks it away as
                                      revoked); else dropped, so it is never discarded later
``timelimit``                         dropped: a hard limit SIGKILLs the pool child, the message
                                      is requeued and killed again, without end
``retries``                           dropped: the retry bound is ours (:mod:`shared.poison`)
``shadow``, ``group``,                dropped (a name for logs, result groups, stamping: nothing
``group_index``, ``ignore_result``,   this worker uses)
``stamped_headers``, ``stamps``,
``replaced_task_nesting``, ``meth``,
anything else
``callbacks``, ``errbacks``,          parked: a canvas publishes further tasks
``chain``, ``chord`` (body ``embed``)
protocol 1 (task fields in the body)  parked: mqlab's producers send protocol 2 (Celery's
                                      default since 4.0); protocol 1 carries ``callbacks``,
                                      ``timelimit`` and ``expires`` in the body, unchecked
====================================  ==========================================================

The contract header :data:`shared.contract.PUBLISHED_AT_HEADER` passes on (the journal reads it;
a bad value costs only the publish time, :func:`shared.contract.published_at_from`).
AMQP properties a message carries (``reply_to``, ``correlation_id``, ``priority``) steer nothing:
there is no result backend (``result_backend=None``, :mod:`celery_impl.broker`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery.utils.time import maybe_iso8601
from kombu.message import Message

from celery_impl.broker import hello_queue, task_queue
from shared.contract import PUBLISHED_AT_HEADER

PASSED_ON = ("lang", "task", "id", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
             PUBLISHED_AT_HEADER)  # fmt: skip
"""Headers handed to Celery as they are; every other header is dropped (see the table)."""

CANVAS = ("callbacks", "errbacks", "chain", "chord")
"""Embedded options of a protocol-2 body that make a worker publish further tasks; mqlab's
producers always send them empty."""

ETA_REFUSED = (
    "refused a message with an ETA/countdown on the work queue: the worker would hold it "
    "unacked until its time, in its only prefetch slot, and serve nothing behind it"
)


def refusal(message: Message) -> str | None:
    """Why ``message`` is parked, or ``None``; in that case its headers are cut down in place
    to what the table above passes on (Celery's ``Request`` reads them from ``message.headers``).

    Raises:
        kombu.exceptions.DecodeError: the body does not decode.
    """
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return "not a Celery task message of protocol 2 (no 'task' header)"
    for key in ("task", "id"):
        if not isinstance(headers.get(key), str) or not headers[key]:
            return f"its {key!r} header is not a non-empty string"
    queue = (message.delivery_info or {}).get("routing_key")
    expected = queue_of(headers["task"])
    if expected is None:
        return f"unknown task {headers['task']!r}: this worker runs the project's tasks only"
    if expected != queue:
        return f"task {headers['task']!r} is not taken from {queue!r}"
    if headers.get("eta") is not None:
        return ETA_REFUSED
    expires = headers.get("expires")
    if expires is not None:
        past = expired(expires)
        if past is None:
            return f"its 'expires' header {expires!r} is not a time"
        if past:
            return "expired before it ran (its 'expires' header is past)"
    fault = body_fault(message.payload)
    if fault:
        return fault
    kept = {key: headers[key] for key in PASSED_ON if key in headers}
    headers.clear()
    headers.update(kept)
    return None


def queue_of(task: str) -> str | None:
    """The queue the project's task ``task`` is published to, or ``None`` for any other name."""
    return {"celery_impl.work": task_queue(), "celery_impl.hello": hello_queue()}.get(task)


def expired(expires: Any) -> bool | None:
    """Whether an ``expires`` header (ISO 8601, as Celery writes it) names a time already past;
    ``None`` if it is not a time Celery can read."""
    try:
        when = maybe_iso8601(expires) if isinstance(expires, str) else None
    except (TypeError, ValueError, OverflowError):
        return None
    if when is None:
        return None
    return datetime.now(UTC if when.tzinfo else None) > when


def body_fault(body: Any) -> str | None:
    """What is wrong with a protocol-2 body, or ``None``.

    The body must be ``[args, kwargs, embed]`` (Celery docs, "Message Protocol: Version 2").
    Celery unpacks it in places where a wrong shape raises outside any handler: a body ``[1]``
    in the consumer, an ``embed`` that is not a mapping in the pool's failure callback (the
    message then stays unacked, holding its prefetch slot). The decoded body is cached on the
    message (kombu ``Message.payload``), which Celery's ``Request`` reads too.
    """
    if not (isinstance(body, (list, tuple)) and len(body) == 3):
        return "the body is not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return "args must be a list and kwargs a mapping"
    if embed is not None and not isinstance(embed, dict):
        return "embed must be a mapping"
    if any((embed or {}).get(key) for key in CANVAS):
        return "a canvas (callbacks, errbacks, chain or chord) this worker does not run"
    return None
