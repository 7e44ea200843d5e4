"""Queue types and the x-arguments every implementation declares its queues with.

One setting, ``MQLAB_QUEUE_TYPE`` (:attr:`shared.settings.Settings.queue_type`), chooses:

* ``classic`` — a durable classic queue, the seed tutorials' queue and RabbitMQ's default.
* ``quorum`` — a quorum queue (``x-queue-type: quorum``): replicated on a majority of a cluster's
  nodes, always durable, what the RabbitMQ tutorials declare since March 2026 (RabbitMQ docs,
  "Quorum Queues"). Quorum queues keep a delivery count per message, so a delivery limit
  (``x-delivery-limit``) bounds a message that keeps failing or keeps killing its worker.

A work queue dead-letters (``x-dead-letter-exchange`` = the default exchange,
``x-dead-letter-routing-key`` = its dead-letter queue) what a worker rejects without requeue and,
on quorum queues, what exceeds the delivery limit (RabbitMQ docs, "Dead Letter Exchanges"): the
message is parked in the dead-letter queue with its body and headers, where a person can see it.
Declaring an existing queue with other arguments fails with 406 PRECONDITION_FAILED
(:class:`shared.errors.QueueMismatch`, whose message names the fix).
"""

from __future__ import annotations

from typing import Any

QUEUE_TYPES = ("classic", "quorum")
"""The queue types mqlab declares (``MQLAB_QUEUE_TYPE``)."""

DEAD_LETTER_SUFFIX = ".dead"
"""A work queue's dead-letter queue is its name plus this (Dramatiq keeps its own ``.XQ``)."""


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of work queue ``queue``: ``<queue>.dead``."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


def arguments(
    queue_type: str, *, dead_letter_to: str | None = None, delivery_limit: int | None = None
) -> dict[str, Any]:
    """The x-arguments of a queue of ``queue_type``.

    Parameters:
        queue_type: ``classic`` or ``quorum``.
        dead_letter_to: the queue that rejected (and, on quorum queues, over-delivered) messages
            are dead-lettered to through the default exchange; ``None`` for none.
        delivery_limit: ``x-delivery-limit``, deliveries after which a quorum queue
            dead-letters a message (ignored for classic queues, which keep no delivery count).

    Raises:
        ValueError: unknown ``queue_type``.
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"queue type must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}")
    # A classic queue is declared without x-queue-type, as the seed tutorials (and most existing
    # queues) were: the same arguments declare the same queue again without a 406.
    args: dict[str, Any] = {"x-queue-type": queue_type} if queue_type == "quorum" else {}
    if dead_letter_to is not None:
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = dead_letter_to
    if queue_type == "quorum" and delivery_limit is not None:
        args["x-delivery-limit"] = delivery_limit
    return args


def work_queue_arguments(queue: str, queue_type: str, delivery_limit: int) -> dict[str, Any]:
    """A work queue's x-arguments: its type, dead letters to :func:`dead_letter_queue`, and on
    quorum queues ``x-delivery-limit`` (``MQLAB_DELIVERY_LIMIT``)."""
    return arguments(
        queue_type, dead_letter_to=dead_letter_queue(queue), delivery_limit=delivery_limit
    )
