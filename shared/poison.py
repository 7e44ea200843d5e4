"""What every worker does with a message it cannot process: park it, say so in one line, go on.

A *processing fault* is anything that stops a delivered message from being worked on: a body
that does not decode, a task that does not exist, arguments that do not fit, a framework
protocol error, a task that keeps raising. The worker never lets one end the process (that
would look like a crash, and the message would come back first in line) and never drops it:
it rejects the delivery without requeue (``basic.reject``/``basic.nack`` with
``requeue=false``), and RabbitMQ dead-letters it, body and headers intact, to the work queue's
dead-letter queue (RabbitMQ docs, "Dead Letter Exchanges"; :mod:`shared.queues`). A person can
read it there (``mqlab broker status`` counts it) and move it back once the cause is fixed.

* What can never succeed is parked after no attempt (:class:`Unprocessable`).
* A task that raises runs at most :data:`MAX_ATTEMPTS` times, then its message is parked. The
  pika and Celery workers repeat it in-process (:func:`run_attempts`); Dramatiq does the same
  through its own ``Retries`` middleware (``max_retries`` = :data:`MAX_ATTEMPTS` - 1). No
  message can raise this bound: it is read from the code, never from the message.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MAX_ATTEMPTS = 3
"""Executions of a task that keeps raising before its message is parked."""


class Unprocessable(Exception):
    """A message that can never be processed (undecodable, unknown task, wrong arguments): it
    is parked without an attempt."""


class GaveUp(Exception):
    """A task raised on each of its :data:`MAX_ATTEMPTS` attempts: its message is parked."""


def run_attempts(run_once: Callable[[], T], attempts: int = MAX_ATTEMPTS) -> T:
    """Call ``run_once`` until it returns, at most ``attempts`` times, and return its result.

    Parameters:
        run_once: one execution of the task (each one journaled by the caller).
        attempts: the bound, :data:`MAX_ATTEMPTS` unless a test says otherwise.

    Raises:
        Unprocessable: at once, without another attempt.
        Exception: whatever the last attempt raised, once ``attempts`` are used up.
    """
    for attempt in range(1, attempts + 1):
        try:
            return run_once()
        except Unprocessable:
            raise
        except Exception:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable: attempts must be 1 or more")


def describe(error: BaseException) -> str:
    """``error`` as a short phrase for the one log line: ``TypeName: message``."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report(message_id: object, dead_letter_queue: str | None, why: str) -> None:
    """Print the one line that says a message was parked, on stderr.

    Parameters:
        message_id: the message's ``message_id`` (or ``None`` if it has none).
        dead_letter_queue: where RabbitMQ dead-letters it; ``None`` where its queue has no
            dead-letter queue (the hello queue, an auto-ack consumer): the line then says it
            was dropped.
        why: what went wrong (:func:`describe`).
    """
    message = message_id or "(no message_id)"
    line = (
        f" [!] parked message {message} in '{dead_letter_queue}': {why}"
        if dead_letter_queue
        else f" [!] dropped message {message} (its queue has no dead-letter queue): {why}"
    )
    print(line, file=sys.stderr, flush=True)
