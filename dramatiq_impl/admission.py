"""What of a Dramatiq message the worker honours: the one place that decides.

A worker runs the tutorial's work: the actor a message names, with its arguments. A Dramatiq
message is a JSON envelope (``dramatiq.Message``: ``queue_name``, ``actor_name``, ``args``,
``kwargs``, ``options``, ``message_id``, ``message_timestamp``), and Dramatiq's middleware reads
instructions from its ``options`` before the actor's own (Dramatiq 2.2: ``pipe_target`` publishes
the result to another actor's queue, ``on_success``/``on_failure``/``on_retry_exhausted`` send
further messages, ``max_retries``/``min_backoff``/``max_backoff``/``throws``/``time_limit``/
``max_age`` change the bounds, ``broker_priority`` goes into the retry's AMQP properties, where a
bad value raises and the message was lost). Here every envelope is checked as it comes off the
queue, before any middleware sees it (:class:`dramatiq_impl.broker.Consumer`):

==========================  ============================================================
field                       here
==========================  ============================================================
``queue_name``              must be the queue it came from, else parked (Dramatiq's worker
                            thread would die on a KeyError, serving nothing)
``actor_name``              a string, else parked (an unknown actor: parked by Dramatiq)
``args``, ``kwargs``        a list and a mapping, else parked (arguments that do not fit
                            the actor: :class:`dramatiq_impl.middleware.ParkPoison`)
``message_id``              a non-empty string, else parked (it is the journal's key)
``message_timestamp``       read for the journal only; any value (a bad one is recorded as
                            publish time 0, :func:`shared.contract.published_at_from_millis`)
``options``                 a mapping, else parked; cut down to :data:`HONOURED`
``options.eta``             a finite number; on the work queue not in the future (Dramatiq
                            holds such a message unacked in a prefetch slot until then); on
                            ``.DQ`` at most :data:`MAX_DELAY_MS` ahead (our retries wait
                            there for at most their backoff); else parked
``options.retries``         a non-negative integer, else 0: the bound itself is ours
                            (:data:`dramatiq_impl.broker.MAX_RETRIES`)
every other option          dropped
==========================  ============================================================

What is parked is nacked without requeue (RabbitMQ dead-letters it to ``.XQ``) with one line
(:mod:`shared.poison`).
"""

from __future__ import annotations

import math
from typing import Any

from dramatiq.common import current_millis, q_name

HONOURED = ("eta", "retries", "traceback", "requeue_timestamp")
"""The options kept: ``eta`` and ``retries`` (checked below), and the two that Dramatiq's
``Retries`` writes on our own retries and reads nowhere (``traceback``, ``requeue_timestamp``)."""

MAX_DELAY_MS = 60_000
"""The furthest ``eta`` accepted on a ``.DQ`` queue, in milliseconds: far more than any backoff
of ours (at most 1 s, :data:`dramatiq_impl.broker.MAX_BACKOFF_MS`); a message due later is
not one of our retries."""


def refusal(message: Any, queue_name: str) -> str | None:
    """Why ``message``, delivered from ``queue_name`` (a work queue or its ``.DQ``), is parked,
    or ``None``; in that case its options are cut down in place to :data:`HONOURED`.

    ``message`` is Dramatiq's ``_RabbitmqMessage`` (a ``MessageProxy``); ``options`` is the
    message's own dict, so every middleware and a republished retry see the cut-down options.
    """
    if message.queue_name != queue_name:
        return f"queue_name {message.queue_name!r} is not the queue it came from"
    if not isinstance(message.actor_name, str):
        return "actor_name is not a string"
    if not isinstance(message.args, (list, tuple)):
        return "args is not a list"
    if not isinstance(message.kwargs, dict):
        return "kwargs is not a mapping"
    if not isinstance(message.message_id, str) or not message.message_id:
        return "message_id is not a non-empty string"
    options = message.options
    if not isinstance(options, dict):
        return "options is not a mapping"
    why = _eta_fault(options.get("eta"), delayed=queue_name != q_name(queue_name))
    if why:
        return why
    retries = options.get("retries", 0)
    kept = {key: options[key] for key in HONOURED if key in options}
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        kept["retries"] = 0
    options.clear()
    options.update(kept)
    return None


def _eta_fault(eta: object, *, delayed: bool) -> str | None:
    """What is wrong with an ``eta`` option (milliseconds since the epoch), or ``None``."""
    if eta is None:
        return None
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        return f"its eta {eta!r} is not a time"
    ahead = eta - current_millis()
    if not delayed and ahead > 0:
        return (
            f"an eta {ahead / 1000:.0f} s ahead on the work queue (delayed messages belong in "
            ".DQ); the worker would hold it unacked until then"
        )
    if delayed and ahead > MAX_DELAY_MS:
        return f"an eta {ahead / 1000:.0f} s ahead on .DQ, beyond any retry's backoff"
    return None
