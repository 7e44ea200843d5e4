"""Dramatiq's RabbitMQ consumer, parking a message whose envelope no worker thread could handle.

Dramatiq decodes each delivery into a ``Message`` (``_RabbitmqConsumer.__next__``; a body that
does not decode is already nacked without requeue, i.e. dead-lettered to ``.XQ``). A message
that decodes but whose envelope does not fit is not caught anywhere: a ``queue_name`` other than
the queue it came from makes the worker thread look up a consumer that does not exist
(``Worker.process_message``: ``self.consumers[message.queue_name]``) and die with a KeyError,
leaving the worker alive but serving nothing; ``options`` that are not a mapping break the
middleware. :class:`GuardedConsumer` checks the envelope as it comes off the queue and nacks
what does not fit (parked in ``.XQ``, one line, :mod:`shared.poison`). Plugged in through
``RabbitmqBroker.consumer_class`` (:class:`~dramatiq_impl.queue_types.TypedQueuesBroker`).
"""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.common import xq_name

from shared import poison


def envelope_fault(message: Any, queue_name: str) -> str | None:
    """What is wrong with the envelope of ``message`` delivered from ``queue_name``, or
    ``None``."""
    if message.queue_name != queue_name:
        return f"queue_name {message.queue_name!r} is not the queue it came from"
    if not isinstance(message.actor_name, str):
        return "actor_name is not a string"
    if not isinstance(message.options, dict):
        return "options is not a mapping"
    if not isinstance(message.kwargs, dict):
        return "kwargs is not a mapping"
    return None


class GuardedConsumer(_RabbitmqConsumer):
    """Dramatiq's consumer that parks a message whose envelope does not fit
    (:func:`envelope_fault`) instead of handing it to a worker thread."""

    def __next__(self) -> Any:
        message = super().__next__()
        if message is None:
            return None
        fault = envelope_fault(message, self.queue_name)
        if fault is None:
            return message
        poison.report(message.message_id, xq_name(self.queue_name), f"bad envelope: {fault}")
        self.nack(message)  # basic_nack without requeue: dead-lettered to .XQ
        return None
