"""Errors every mqlab program reports as one clear line and a non-zero exit.

Each class maps one kind of bad input or broken environment to a message that says what
happened and what to do. Programs catch :class:`MqlabError` at their entry point, print
``error: <message>`` on stderr and exit with :attr:`MqlabError.exit_code`
(:class:`shared.exit_codes.ExitCode`).
"""

from __future__ import annotations

import re

from shared.exit_codes import ExitCode


class MqlabError(Exception):
    """Base class: ``str(error)`` is the one-line message for the user. Raised as such only
    for a broker reply mqlab has no better word for."""

    exit_code: int = ExitCode.PROTOCOL


class BrokerUnreachable(MqlabError):
    """No AMQP connection could be opened (refused, timed out, DNS)."""

    exit_code = ExitCode.UNAVAILABLE


class AccessRefused(MqlabError):
    """The broker refused the credentials or the vhost (``ACCESS_REFUSED``, 403)."""

    exit_code = ExitCode.NOPERM


class QueueMismatch(MqlabError):
    """A queue exists with other arguments (``406 PRECONDITION_FAILED`` on ``queue.declare``)."""

    exit_code = ExitCode.QUEUE_MISMATCH


class Unroutable(MqlabError):
    """A ``mandatory`` publish was returned: no queue is bound for its routing key."""

    exit_code = ExitCode.UNROUTABLE


class PublishRefused(MqlabError):
    """The broker nacked a publish under publisher confirms."""

    exit_code = ExitCode.NACKED


class PublishUnconfirmed(MqlabError):
    """No publisher confirm arrived within ``MQLAB_CONFIRM_TIMEOUT``: the message may or may not
    be stored (a quorum queue without a majority of its nodes neither confirms nor refuses).

    Attributes:
        retried_for: seconds the message was published again (``MQLAB_FAILOVER_TIMEOUT``),
            0 if it was not.
    """

    exit_code = ExitCode.UNCONFIRMED
    retried_for: float = 0.0


def unconfirmed(
    seconds: float, confirmed: int, total: int, retried_for: float = 0.0
) -> PublishUnconfirmed:
    """The error for a publish the broker did not confirm within ``seconds`` (nor when
    published again for ``retried_for`` seconds), after ``confirmed`` of ``total`` messages
    were."""
    again = (
        f", nor when published again for {retried_for:g} s (MQLAB_FAILOVER_TIMEOUT)"
        if retried_for
        else ""
    )
    error = PublishUnconfirmed(
        f"RabbitMQ did not confirm message {confirmed + 1} of {total} within {seconds:g} s{again} "
        f"(a quorum queue without a majority of its nodes?); {confirmed} were confirmed; message "
        f"{confirmed + 1} may still be stored once the queue has a majority again (sending it "
        "again may duplicate it), the rest were not sent"
    )
    error.retried_for = retried_for
    return error


class BadSetting(MqlabError):
    """An environment variable or option has a value mqlab cannot use (``MQLAB_PREFETCH=abc``,
    an ``AMQP_URL`` that is not an AMQP URI)."""

    exit_code = ExitCode.CONFIG


class BrokerUnavailable(MqlabError):
    """No RabbitMQ could be provisioned (no binary, no Docker engine, no ``AMQP_URL``)."""

    exit_code = ExitCode.NO_BROKER


class WorkerCannotGoOn(MqlabError):
    """A worker met an error it cannot recover from (lost permissions, a framework failure):
    it exits non-zero so a supervisor (systemd ``Restart=on-failure``, Kubernetes) restarts it."""

    exit_code = ExitCode.SOFTWARE


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
    """The error for a broker at ``where`` (``host:port``) that could not be reached;
    :class:`NoBroker` when ``where`` is :data:`NOWHERE_HOST` (no broker was configured)."""
    if where.split(":")[0] == NOWHERE_HOST:
        return NoBroker(NO_BROKER)
    return BrokerUnreachable(
        f"cannot connect to RabbitMQ at {where} ({reason}); is it running, and is AMQP_URL "
        "right? (for a private node: mqlab broker up --detach)"
    )


def lost_twice(cause: str, tries: int = 2, retried_for: float = 0.0) -> BrokerUnreachable:
    """The error for a publish whose connection was lost, replaced, and lost again (``tries``
    times in all, republishing for ``retried_for`` seconds: ``MQLAB_FAILOVER_TIMEOUT``)."""
    times = "twice" if tries == 2 else f"{tries} times"
    during = f" over {retried_for:g} s (MQLAB_FAILOVER_TIMEOUT)" if retried_for else ""
    return BrokerUnreachable(
        f"lost the connection to RabbitMQ {times} while publishing{during} ({cause}); "
        "the message was not confirmed"
    )


class QueueNotFound(MqlabError):
    """RabbitMQ answered 404 NOT_FOUND: a queue that should be there is not (a durable classic
    queue whose home node is down, or one deleted meanwhile)."""

    exit_code = ExitCode.NOT_FOUND


def home_node_down(code: int, text: str) -> bool:
    """Whether a 404 NOT_FOUND says that a durable classic queue's home node is down or out of
    reach (RabbitMQ: "home node '...' of durable queue '...' in vhost '/' is down or
    inaccessible"), not that the queue is gone: the queue comes back with its node (a restart,
    a healed partition), so a worker waits for it instead of stopping.

    Parameters:
        code: the reply code RabbitMQ closed the channel with.
        text: its reply text.
    """
    return code == 404 and "home node" in text and "is down or inaccessible" in text


class HomeNodeDown(QueueNotFound):
    """The 404 of :func:`home_node_down`: the queue is there, its node is not (yet)."""


class UsageError(MqlabError):
    """Bad command-line input (unknown implementation or scenario, bad count)."""

    exit_code = ExitCode.USAGE


class PublisherBlocked(MqlabError):
    """RabbitMQ blocked this publisher (``connection.blocked``: a memory or disk alarm) for
    longer than ``MQLAB_BLOCKED_TIMEOUT``."""

    exit_code = ExitCode.BLOCKED


PERMISSION_FOR = {"declare": "configure", "publish": "write", "consume": "read"}
"""The permission RabbitMQ checks for each operation on a queue or exchange (RabbitMQ docs,
"Access Control": how permissions work). Declaring a queue with dead-letter arguments, as
Dramatiq does, also needs read on the queue and write on the dead-letter exchange."""


def blocked(reason: str, waited: float, sent: bool) -> PublisherBlocked:
    """The error for a publish that stayed blocked ``waited`` seconds.

    Parameters:
        reason: what RabbitMQ said in ``connection.blocked`` ("low on memory").
        waited: the bound that was reached (``MQLAB_BLOCKED_TIMEOUT``), seconds.
        sent: whether the message had been written to the socket (it may then still be
            delivered once the alarm clears, unconfirmed).
    """
    fate = (
        "the message was not confirmed and may still arrive once the alarm clears"
        if sent
        else "the message was not sent"
    )
    why = f"RabbitMQ says: {reason}" if reason else "RabbitMQ gave no reason"
    return PublisherBlocked(
        f"RabbitMQ is blocking publishers (a memory or disk alarm on the broker; {why}) and "
        f"stayed so for {waited:g} s (MQLAB_BLOCKED_TIMEOUT); {fate}"
    )


def refused(code: int, text: str, user: str, vhost: str, doing: str) -> MqlabError:
    """The error for a channel or connection the broker closed while we were ``doing`` one of
    ``declare``, ``publish`` or ``consume`` (or ``connect``).

    Parameters:
        code: the AMQP reply code (403 ACCESS_REFUSED, 404 NOT_FOUND, 530 NOT_ALLOWED...).
        text: the broker's reply text.
        user: the user name we logged in as.
        vhost: the virtual host.
        doing: the operation (a key of :data:`PERMISSION_FOR`, or ``connect``).
    """
    text = text.strip()
    if code == 403:
        need = PERMISSION_FOR.get(doing)
        if "access to exchange" in text:
            need = "write"  # publishing to it, or dead-lettering into it
        elif doing == "declare":
            need = "configure (and, for a queue with a dead-letter exchange, read)"
        fix = (
            f"user '{user}' needs the {need} permission on it in vhost '{vhost}'"
            if need
            else f"check user '{user}''s permissions in vhost '{vhost}'"
        )
        return AccessRefused(
            f"RabbitMQ refused to {doing} (403 {text}): {fix} "
            "(rabbitmqctl set_permissions -p <vhost> <user> <configure> <write> <read>)"
        )
    if code in (530, 402) or doing == "connect":
        return AccessRefused(vhost_refused(user, vhost, f"{code} {text}"))
    if code == 404:
        not_found = HomeNodeDown if home_node_down(code, text) else QueueNotFound
        return not_found(f"RabbitMQ: {text} (404 while trying to {doing})")
    return MqlabError(f"RabbitMQ closed the channel while trying to {doing} ({code} {text})")


def vhost_refused(user: str, vhost: str, detail: str) -> str:
    """The message for a connection refused at ``connection.open`` (530 NOT_ALLOWED)."""
    return (
        f"RabbitMQ refused user '{user}' access to vhost '{vhost}' ({detail}): the vhost does "
        "not exist or the user has no permissions on it (rabbitmqctl list_vhosts; "
        "rabbitmqctl list_user_permissions <user>)"
    )


NOWHERE_HOST = "no-broker-configured.invalid"
"""The host of :data:`shared.settings.NOWHERE`, the AMQP URL when no broker is configured."""

NO_BROKER = (
    "no broker to use: start a private one with 'mqlab broker up --detach', or set AMQP_URL "
    "(amqp://guest:guest@localhost:5672/%2F for a RabbitMQ of your own on this machine)"
)
"""The one line every program stops with when neither ``AMQP_URL`` nor a ``mqlab broker up``
node says which broker to use (mqlab never falls back to ``localhost:5672`` by itself)."""


class NoBroker(BrokerUnreachable):
    """Neither ``AMQP_URL`` is set nor a ``mqlab broker up`` node runs: a configuration error
    (:attr:`~shared.exit_codes.ExitCode.CONFIG`)."""

    exit_code = ExitCode.CONFIG
