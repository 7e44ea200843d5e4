"""The one table of exit codes every mqlab program uses (workers, producers, ``send`` /
``receive``, ``mqlab``), so a user or a supervisor can tell "fix your command" from "retry
later" from "fix the broker's permissions" without reading the message.

Codes 64-78 follow BSD's ``sysexits.h`` where a cause fits one of its meanings; the producer's
outcomes that ``sysexits.h`` has no word for have small codes of their own. No known failure
exits 1 (Python's code for an uncaught exception: a bug). Each
:class:`~shared.errors.MqlabError` subclass names its code; the README's "Exit codes" table
lists them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Why a program ended."""

    OK = 0
    """Done: every message confirmed, or the worker stopped cleanly (SIGTERM, Ctrl+C)."""
    UNROUTABLE = 3
    """The broker returned a ``mandatory`` message: no queue for its routing key."""
    NACKED = 4
    """The broker nacked a message under publisher confirms (a quorum queue lost its leader)."""
    UNCONFIRMED = 5
    """No confirm within ``MQLAB_CONFIRM_TIMEOUT``: the message may or may not be stored
    (sending it again may duplicate it)."""
    USAGE = 64
    """``EX_USAGE``: bad command-line input (argparse errors, an option out of range, a
    message text that is not UTF-8, an unknown implementation or scenario)."""
    NOT_FOUND = 66
    """``EX_NOINPUT``: a queue that should be there is not (404 NOT_FOUND, e.g. a durable
    classic queue whose home node is down)."""
    UNAVAILABLE = 69
    """``EX_UNAVAILABLE``: the broker cannot be reached (refused, timed out, DNS), or the
    connection was lost and could not be replaced."""
    SOFTWARE = 70
    """``EX_SOFTWARE``: a worker met an error it cannot recover from (a framework failure, the
    broker closing its channel for an unexpected reason); a supervisor restarts it."""
    NO_BROKER = 71
    """``EX_OSERR``: no RabbitMQ could be provisioned (no binary, no Docker engine)."""
    QUEUE_MISMATCH = 73
    """``EX_CANTCREAT``: a queue exists with other arguments (406 PRECONDITION_FAILED on
    ``queue.declare``): another type, durability or dead-letter setting."""
    BLOCKED = 75
    """``EX_TEMPFAIL``: RabbitMQ blocked publishers (a memory or disk alarm) for longer than
    ``MQLAB_BLOCKED_TIMEOUT``; retry once the alarm clears."""
    PROTOCOL = 76
    """``EX_PROTOCOL``: RabbitMQ closed the connection or channel with a reply mqlab has no
    better word for (541 INTERNAL_ERROR: a quorum queue without a majority, ...)."""
    NOPERM = 77
    """``EX_NOPERM``: ACCESS_REFUSED: wrong user name or password, no access to the vhost, or
    a missing configure / write / read permission."""
    CONFIG = 78
    """``EX_CONFIG``: a setting mqlab cannot use (``MQLAB_PREFETCH=abc``, an ``AMQP_URL`` that
    is not an AMQP URI, an unsafe ``broker up`` record directory), or no broker to use
    (neither ``AMQP_URL`` nor a ``mqlab broker up`` node)."""
    INTERRUPTED = 130
    """Ctrl+C (128 + SIGINT), the shell's convention."""
