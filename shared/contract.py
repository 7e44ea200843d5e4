"""The message contract every implementation honours.

Every message carries these AMQP 0-9-1 basic properties (AMQP 0-9-1 spec, ``basic`` class):

* ``message_id`` — a UUID4 string; the journal keys executions by it.
* ``timestamp`` — publish time in whole seconds (the AMQP field has one-second resolution).
* ``content_type`` — ``text/plain`` for the tutorial bodies (frameworks use their own, e.g.
  ``application/json``).
* ``delivery_mode`` — ``2`` (persistent) for work messages, so a durable queue keeps them across
  a broker restart (RabbitMQ docs, "Queues: Durability" and "Reliability Guide").

Because ``timestamp`` is too coarse for latency figures, the precise publish time travels in the
header :data:`PUBLISHED_AT_HEADER` as a decimal string of seconds since the epoch (a string,
because AMQP tables have no float type that every client encodes: pika refuses Python floats).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

PUBLISHED_AT_HEADER = "x-mqlab-published-at"
"""Header with the precise publish time: ``repr(float)`` seconds since the Unix epoch."""

CONTENT_TYPE = "text/plain"
PERSISTENT = 2
TRANSIENT = 1


@dataclass(frozen=True)
class Envelope:
    """What the contract attaches to one message before it is published.

    Attributes:
        message_id: UUID4 string, unique per published message.
        published_at: publish time, float seconds since the epoch.
    """

    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    published_at: float = field(default_factory=time.time)

    @property
    def timestamp(self) -> int:
        """The AMQP ``timestamp`` property: whole seconds since the epoch."""
        return int(self.published_at)

    def headers(self) -> dict[str, str]:
        """Headers to merge into the message's ``headers`` table."""
        return {PUBLISHED_AT_HEADER: repr(self.published_at)}


def published_at_from(headers: dict[str, object] | None, timestamp: object = None) -> float:
    """Recover the precise publish time from a message's headers; never raises.

    Falls back to the whole-second AMQP ``timestamp`` and then to 0.0 when the message did not
    come from an mqlab producer, or when the header is not a finite number (bytes that are not
    UTF-8, ``"nan"``, ``"inf"``, another type): a bad header is recorded as an unknown publish
    time and never costs the message its work.
    """
    if headers:
        value = headers.get(PUBLISHED_AT_HEADER)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        parsed = _finite(value)
        if parsed is not None:
            return parsed
    return _finite(timestamp) or 0.0


def published_at_from_millis(millis: object) -> float:
    """Seconds since the epoch from a millisecond timestamp (Dramatiq's ``message_timestamp``);
    0.0 when it is not a finite number. Never raises."""
    parsed = _finite(millis)
    return parsed / 1000 if parsed is not None else 0.0


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` (booleans, NaN, infinities, text that is not
    a number, other types)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class Published(Protocol):
    """What a producer returns for each message it published: anything with its message_id
    (an :class:`Envelope`, a Dramatiq ``Message``)."""

    @property
    def message_id(self) -> str:
        """The message's AMQP message_id."""
