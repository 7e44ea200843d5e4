"""Errors every mqlab program reports as one clear line and a non-zero exit.

Each class maps one kind of bad input or broken environment to a message that says what
happened and what to do. Programs catch :class:`MqlabError` at their entry point, print
``error: <message>`` on stderr and exit with :attr:`MqlabError.exit_code`.
"""

from __future__ import annotations

import re


class MqlabError(Exception):
    """Base class: ``str(error)`` is the one-line message for the user."""

    exit_code = 1


class BrokerUnreachable(MqlabError):
    """No AMQP connection could be opened (refused, timed out, DNS)."""

    exit_code = 2


class AccessRefused(MqlabError):
    """The broker refused the credentials or the vhost (``ACCESS_REFUSED``, 403)."""

    exit_code = 3


class QueueMismatch(MqlabError):
    """A queue exists with other arguments (``406 PRECONDITION_FAILED`` on ``queue.declare``)."""

    exit_code = 4


class Unroutable(MqlabError):
    """A ``mandatory`` publish was returned: no queue is bound for its routing key."""

    exit_code = 5


class PublishRefused(MqlabError):
    """The broker nacked a publish under publisher confirms."""

    exit_code = 5


class PublishUnconfirmed(MqlabError):
    """No publisher confirm arrived within ``MQLAB_CONFIRM_TIMEOUT``: the message may or may not
    be stored (a quorum queue without a majority of its nodes neither confirms nor refuses)."""

    exit_code = 5


def unconfirmed(seconds: float, confirmed: int, total: int) -> PublishUnconfirmed:
    """The error for a publish the broker did not confirm within ``seconds``, after
    ``confirmed`` of ``total`` messages were."""
    return PublishUnconfirmed(
        f"RabbitMQ did not confirm message {confirmed + 1} of {total} within {seconds:g} s "
        f"(a quorum queue without a majority of its nodes?); {confirmed} were confirmed, the "
        "rest are not counted as sent"
    )


class BadSetting(MqlabError):
    """An environment variable or option has a value mqlab cannot use (``MQLAB_PREFETCH=abc``,
    an ``AMQP_URL`` that is not an AMQP URI)."""

    exit_code = 2


class BrokerUnavailable(MqlabError):
    """No RabbitMQ could be provisioned (no binary, no Docker engine, no ``AMQP_URL``)."""

    exit_code = 6


def queue_mismatch_message(queue: str, detail: str) -> str:
    """The one-line explanation for a 406 PRECONDITION_FAILED on declaring ``queue``; when the
    queue is of another type (``x-queue-type``), the fix names ``MQLAB_QUEUE_TYPE`` first."""
    found = re.search(r"'x-queue-type'.*current is (?:the value '(\w+)'|none)", detail)
    other_type = "" if found is None else f"set MQLAB_QUEUE_TYPE={found.group(1) or 'classic'}, "
    return (
        f"queue '{queue}' already exists with other arguments (406 PRECONDITION_FAILED: "
        f"{detail}). Fix: {other_type}delete that queue on this broker (management UI, or "
        f"rabbitmqctl -n <node> delete_queue {queue}) or set MQLAB_QUEUE_PREFIX to use "
        "other queue names."
    )


def unreachable(where: str, reason: str) -> BrokerUnreachable:
    """The error for a broker at ``where`` (``host:port``) that could not be reached."""
    return BrokerUnreachable(
        f"cannot connect to RabbitMQ at {where} ({reason}); is it running, and is AMQP_URL right?"
    )


def lost_mid_publish(reason: str, confirmed: int, total: int) -> BrokerUnreachable:
    """The error for a producer whose connection dropped after ``confirmed`` of ``total``."""
    return BrokerUnreachable(
        f"lost the connection to RabbitMQ ({reason}) after {confirmed} of {total} messages were "
        "confirmed; the rest were not sent"
    )
