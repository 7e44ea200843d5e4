"""The machinery under the Dramatiq worker that a tutorial reader need not see.

Dramatiq's worker runs the actors on its own threads, apart from each queue's consumer thread,
which keeps the connection (and its heartbeats) going however long a task takes. When the
consumer's connection fails, Dramatiq's ``_ConsumerThread`` logs it and opens a new consumer,
forever (``dramatiq/worker.py``): right after a broker restart, and also when the broker now
refuses the worker, where retrying cannot help. :class:`ExitWhenRefused` ends the worker process
in that case with one ``error:`` line and the refusal's exit code (3, as for a wrong password at
start); Dramatiq's main process then
stops the others and exits with that code (``dramatiq/cli.py``: "Worker ... exited
unexpectedly"), so a supervisor restarts it.

**What of a message is honoured** is decided as it comes off the queue, before any middleware
sees it (:mod:`dramatiq_impl.admission`): :class:`GuardedConsumer` nacks what is refused (parked
in ``.XQ``, one line, :mod:`shared.poison`) and hands on the rest with its options cut down to
an allow-list. Plugged in through the broker's ``consumer_class`` property
(:class:`ExitWhenRefused`, and the consumer of :class:`dramatiq_impl.settings.Broker` extends it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.common import xq_name

from dramatiq_impl import admission
from dramatiq_impl.queue_types import TypedQueuesBroker
from shared import pika_errors, poison

REFUSED = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)
"""pika's errors for a broker that refuses the user or the vhost (403 ACCESS_REFUSED)."""


def refusal(error: BaseException | None) -> BaseException | None:
    """The 403 refusal inside ``error`` (Dramatiq wraps pika's errors: ``ConnectionClosed``
    keeps it as ``.message`` and as the cause), or ``None``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, REFUSED):
            return error
        if getattr(error, "reply_code", None) == 403:
            return error
        inner = getattr(error, "message", None)
        if isinstance(inner, BaseException):
            error = inner
            continue
        error = error.__cause__ or error.__context__
    return None


class GuardedConsumer(_RabbitmqConsumer):
    """Dramatiq's consumer that decides what of each message is honoured
    (:func:`dramatiq_impl.admission.refusal`) and parks what is refused instead of handing it to
    a worker thread."""

    def __next__(self) -> Any:
        message = super().__next__()
        if message is None:
            return None
        fault = admission.refusal(message, self.queue_name)
        if fault is None:
            return message
        poison.report(message.message_id, xq_name(self.queue_name), fault)
        self.nack(message)  # basic_nack without requeue: dead-lettered to .XQ
        return None


class ExitWhenRefused(TypedQueuesBroker):
    """A ``RabbitmqBroker`` whose ``consume`` ends the worker process with one line and a
    non-zero exit code when the broker refuses it, and whose consumers park a poison envelope
    (:class:`GuardedConsumer`)."""

    @property
    def consumer_class(self) -> type[GuardedConsumer]:
        """Dramatiq's consumer class for ``consume``: ours, which parks a bad envelope."""
        return GuardedConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """``RabbitmqBroker.consume``; a 403 refusal while connecting or declaring exits the
        process (:class:`~shared.errors.AccessRefused`'s exit code) instead of raising into
        Dramatiq's retry loop (a refused ``basic.consume`` is :class:`dramatiq_impl.settings.
        Broker`'s)."""
        try:
            return super().consume(queue_name, prefetch, timeout)
        except Exception as e:
            refused = refusal(e)
            if refused is None:
                raise
            error = pika_errors.translate(refused, self.parameters, queue_name, "connect")
            print(f"error: {error}", file=sys.stderr, flush=True)
            os._exit(error.exit_code)
