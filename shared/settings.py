"""Settings shared by every implementation, read from the environment in one place.

Every program in mqlab (producers, workers, the lab, the tests) reads its connection and
delivery settings through :func:`load`, so one environment variable changes all three
implementations the same way.

==========================  ==========================================  =====================
variable                    meaning                                     default
==========================  ==========================================  =====================
``AMQP_URL``                the broker (RabbitMQ URI spec); several     the ``mqlab broker up``
                            nodes of one cluster as ``url1;url2;url3``  node if one runs, else
                                                                        none: the first connection
                                                                        stops the program (exit 78,
                                                                        :data:`NOWHERE`)
``MQLAB_PREFETCH``          consumer prefetch count per worker slot,    ``1``
                            0 = unlimited
``MQLAB_CONFIRMS``          publisher confirms on (``1``) or off        ``1``
``MQLAB_CONFIRM_TIMEOUT``   seconds a producer waits for one publisher  ``30``
                            confirm before it reports the message unsent
``MQLAB_HEARTBEAT``         AMQP heartbeat timeout, seconds             ``60``
``MQLAB_CONNECT_TIMEOUT``   TCP connect / handshake timeout, seconds    ``5``
``MQLAB_RECONNECT_SECONDS`` how long the pika worker tries to          ``60``
                            reconnect after losing its connection, s
``MQLAB_DOT_SECONDS``       seconds of work per ``.`` in a work body    ``1.0``
``MQLAB_SLOWDOWN``          factor applied to this worker's work time   ``1.0``
``MQLAB_WORKER_NAME``       name this worker writes to the journal      ``<host>-<pid>``
``MQLAB_JOURNAL``           path of the SQLite execution journal        unset (no journal)
``MQLAB_QUEUE_PREFIX``      prepended to every queue name (checked by   ``""``
                            :func:`check_queue_prefix`)
``MQLAB_QUEUE_TYPE``        ``classic`` or ``quorum`` (:mod:`shared.    ``classic``
                            queues`)
``MQLAB_DELIVERY_LIMIT``    deliveries before a quorum queue dead-      ``5``
                            letters a message (``x-delivery-limit``)
``MQLAB_CONCURRENCY``       task slots of one worker (threads,          ``1``
                            processes, as the framework runs them)
``MQLAB_BLOCKED_TIMEOUT``   how long a publish waits while the broker   ``10``
                            blocks publishers (memory or disk alarm)
                            before it fails, seconds
``MQLAB_FAILOVER_TIMEOUT``  how long a producer republishes a message   ``30``
                            after its connection was lost or its
                            publish unconfirmed or nacked (another
                            node of ``AMQP_URL``), s; ``0`` = once more
                            after a lost connection only
==========================  ==========================================  =====================
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlparse

import pika

from shared import broker_up
from shared.errors import NOWHERE_HOST, BadSetting
from shared.queues import QUEUE_TYPES

LONGEST_QUEUE_NAME = "faststream.task_queue.dead"
"""The longest queue name any implementation appends to ``MQLAB_QUEUE_PREFIX`` (FastStream's
dead-letter queue)."""

MAX_QUEUE_NAME_BYTES = 255
"""AMQP 0-9-1 queue names are short strings: at most 255 bytes of UTF-8 (RabbitMQ docs,
"Queues": names)."""

QUEUE_NAME_RULE = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")
"""Dramatiq's rule for queue names (``dramatiq/actor.py``, ``_queue_name_re``); a prefix obeying
it keeps every name valid for all three implementations."""


NOWHERE = f"amqp://{NOWHERE_HOST}/%2F"
"""The AMQP URL when there is no broker to use: programs are built with it (``--help`` works,
a framework's app is made at import), and the first connection fails with
:class:`~shared.errors.NoBroker` (:func:`shared.errors.unreachable`); the ``.invalid``
top-level domain never resolves (RFC 2606), so it can reach nobody's broker."""


def _flag(value: str) -> bool:
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """A snapshot of mqlab's settings.

    Attributes:
        amqp_url: AMQP 0-9-1 URI of the broker, or several nodes' URIs joined by ``;`` (a
            cluster: clients connect to the first that answers, and fail over to the others).
        prefetch: consumer prefetch count (``basic.qos``) per worker slot; ``0`` means
            unlimited.
        confirms: whether producers wait for publisher confirms.
        confirm_timeout: seconds a producer waits for the broker to confirm one publish; a
            quorum queue that lost its majority neither confirms nor nacks for a long time
            (RabbitMQ 3.10 nacks after about 60 s).
        heartbeat: AMQP heartbeat timeout in seconds (0 disables heartbeats).
        connect_timeout: seconds to wait for the TCP connection and AMQP handshake.
        reconnect_seconds: how long the pika worker keeps trying to reconnect after its connection
            dropped (a broker restart) before it gives up with an error.
        dot_seconds: seconds of simulated work per ``.`` in a work body (tutorial 2).
        slowdown: factor this worker multiplies its work time by (fair-dispatch demos).
        worker_name: the name this process writes into the journal.
        journal: path of the execution journal, or ``None`` for no journal.
        queue_prefix: prefix for every queue name, so test runs can use their own namespace.
        blocked_timeout: seconds a publish waits while RabbitMQ blocks publishers
            (``connection.blocked``: memory or disk alarm) before it fails.
        failover_timeout: seconds after a message's first failed publish (connection lost,
            unconfirmed, nacked) during which the producer publishes it again, on a new
            connection to the first node of ``AMQP_URL`` that answers
            (:meth:`shared.producer.BaseProducer.publish`).
        queue_type: ``classic`` or ``quorum`` (:mod:`shared.queues`).
        delivery_limit: ``x-delivery-limit`` of quorum work queues.
        concurrency: task slots of one worker; each slot may hold ``prefetch`` messages.
    """

    amqp_url: str
    prefetch: int
    confirms: bool
    confirm_timeout: float
    heartbeat: int
    connect_timeout: float
    reconnect_seconds: float
    dot_seconds: float
    slowdown: float
    worker_name: str
    journal: str | None
    queue_prefix: str
    blocked_timeout: float = 10.0
    failover_timeout: float = 30.0
    queue_type: str = "classic"
    delivery_limit: int = 5
    concurrency: int = 1

    @property
    def amqp_urls(self) -> list[str]:
        """Every node URI in :attr:`amqp_url`, in order (one for a single broker)."""
        return amqp_urls(self.amqp_url)

    def queue(self, name: str) -> str:
        """Return the queue name ``name`` with this run's prefix applied."""
        return f"{self.queue_prefix}{name}"


def load() -> Settings:
    """Read :class:`Settings` from the environment (see the module docstring for variables).

    ``AMQP_URL`` unset (or empty) means the node ``mqlab broker up`` started
    (:mod:`shared.broker_up`); with neither, :data:`NOWHERE`, and the program's first
    connection stops it with :class:`~shared.errors.NoBroker` (exit 78, one line naming both
    ways to get a broker). mqlab never falls back to ``localhost:5672`` by itself: on a machine
    with a system broker, a misspelt variable would publish into it.

    Raises:
        BadSetting: a variable does not parse or is out of range (the message names it), or
            ``AMQP_URL`` is not an AMQP URI.
    """
    env = os.environ
    amqp_url = env.get("AMQP_URL") or broker_up.amqp_url() or NOWHERE
    amqp_urls(amqp_url)  # validates every node's URI
    return Settings(
        amqp_url=amqp_url,
        # basic.qos prefetch-count is a 16-bit field (AMQP 0-9-1); 0 means no limit.
        prefetch=int(_number("MQLAB_PREFETCH", "1", int, 0, 65535)),
        confirms=_flag(env.get("MQLAB_CONFIRMS", "1")),
        confirm_timeout=_number("MQLAB_CONFIRM_TIMEOUT", "30", float, 0.001, 86400),
        heartbeat=int(_number("MQLAB_HEARTBEAT", "60", int, 0, 65535)),
        connect_timeout=_number("MQLAB_CONNECT_TIMEOUT", "5", float, 0.001, 3600),
        reconnect_seconds=_number("MQLAB_RECONNECT_SECONDS", "60", float, 0, 86400),
        dot_seconds=_number("MQLAB_DOT_SECONDS", "1.0", float, 0, 3600),
        slowdown=_number("MQLAB_SLOWDOWN", "1.0", float, 0, 1000),
        worker_name=env.get("MQLAB_WORKER_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        journal=env.get("MQLAB_JOURNAL") or None,
        queue_prefix=check_queue_prefix(env.get("MQLAB_QUEUE_PREFIX", "")),
        queue_type=_choice("MQLAB_QUEUE_TYPE", "classic", QUEUE_TYPES),
        delivery_limit=int(_number("MQLAB_DELIVERY_LIMIT", "5", int, 1, 1_000_000)),
        concurrency=int(_number("MQLAB_CONCURRENCY", "1", int, 1, 1024)),
        blocked_timeout=_number("MQLAB_BLOCKED_TIMEOUT", "10", float, 0.1, 3600),
        failover_timeout=_number("MQLAB_FAILOVER_TIMEOUT", "30", float, 0, 86400),
    )


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default)
    value = raw.strip().lower()
    if value not in choices:
        raise BadSetting(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return value


def _number(
    name: str, default: str, cast: type[int] | type[float], low: float, high: float
) -> float:
    raw = os.environ.get(name, default)
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise BadSetting(f"{name}={raw!r} is not {kind}") from None
    if not low <= value <= high:  # also rejects nan
        raise BadSetting(f"{name}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def amqp_urls(url: str) -> list[str]:
    """Split an ``AMQP_URL`` holding one URI or several nodes' URIs joined by ``;`` (the list
    form kombu reads for failover, Celery docs "broker_url") and check each.

    Parameters:
        url: ``amqp://...`` or ``amqp://a;amqp://b;amqp://c``.

    Returns:
        The node URIs in order; the first is where clients try first.

    Raises:
        BadSetting: empty, or a part is not an AMQP URI (the message shows it without password).
    """
    parts = [part.strip() for part in url.split(";") if part.strip()]
    if not parts:
        raise BadSetting(f"AMQP_URL={url!r} holds no AMQP URI")
    for part in parts:
        check_amqp_url(part)
    return parts


def broker_address(amqp_url: str) -> str:
    """``host:port`` of ``amqp_url``, never its user or password (the port defaults to 5672, or
    5671 for ``amqps://``), for the first line every worker and producer prints; for several
    nodes (``url1;url2``) each node's, joined by ``", "``."""
    if ";" in amqp_url:
        return ", ".join(broker_address(url) for url in amqp_urls(amqp_url))
    parsed = urlparse(amqp_url)
    host = parsed.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parsed.port or (5671 if parsed.scheme == 'amqps' else 5672)}"


def node_address(host: str, port: int) -> str:
    """``host:port`` of the one node a connection is open to (``[::1]:5672`` for IPv6), for
    the first line every worker prints: with several nodes in ``AMQP_URL``, the one it chose."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_query(query: str) -> None:
    """Raise ValueError naming the first query option pika refuses (``?heartbeat=abc``)."""
    for key, value in parse_qsl(query, keep_blank_values=True):
        try:
            pika.URLParameters(f"amqp://localhost/?{urlencode({key: value})}")
        except (ValueError, TypeError, SyntaxError) as e:
            why = "pika reads it as a Python dict literal" if key == "ssl_options" else str(e)
            raise ValueError(f"query option {key}={value!r} is not valid: {why}") from None


def check_queue_prefix(prefix: str) -> str:
    """Check ``MQLAB_QUEUE_PREFIX`` once for all three implementations; return it.

    Every queue name is ``prefix + name``, so the prefix must leave the longest name
    (:data:`LONGEST_QUEUE_NAME`) within :data:`MAX_QUEUE_NAME_BYTES`, must not start with
    ``amq.`` (RabbitMQ reserves those names: 403 ACCESS_REFUSED) and must follow Dramatiq's
    queue-name rule (:data:`QUEUE_NAME_RULE`: a letter or ``_`` first, then letters, digits,
    ``.``, ``_``, ``-``).

    Raises:
        BadSetting: it breaks one of these rules (the message says which).
    """
    if not prefix:
        return prefix
    room = MAX_QUEUE_NAME_BYTES - len(LONGEST_QUEUE_NAME)
    size = len(prefix.encode("utf-8", errors="surrogateescape"))
    if size > room:
        raise BadSetting(
            f"MQLAB_QUEUE_PREFIX is {size} bytes long; at most {room} (queue names are at "
            f"most {MAX_QUEUE_NAME_BYTES} bytes, and the longest is prefix + "
            f"'{LONGEST_QUEUE_NAME}')"
        )
    if prefix.lower().startswith("amq."):
        raise BadSetting(
            f"MQLAB_QUEUE_PREFIX={prefix!r} starts with 'amq.', which RabbitMQ reserves for its "
            "own queues (403 ACCESS_REFUSED)"
        )
    if not QUEUE_NAME_RULE.fullmatch(prefix):
        raise BadSetting(
            f"MQLAB_QUEUE_PREFIX={prefix!r} is not a valid queue-name start: use a letter or "
            "'_' first, then letters, digits, '.', '_' or '-' (Dramatiq's queue-name rule)"
        )
    return prefix


def check_amqp_url(url: str) -> None:
    """Check that ``url`` is an AMQP URI (RabbitMQ docs, "URI Spec"): scheme, host, port, and
    query options pika accepts (``?heartbeat=30``; pika's ``URLParameters`` reads them, and
    an option it refuses is refused for all three implementations alike).

    Raises:
        BadSetting: it is not (the message shows the URL without its password).
    """
    # Masked without urlparse, which raises for a broken [IPv6] host before it finds the password.
    shown = re.sub(r"^([^:/]*://[^:@/]*):[^@]*@", r"\1:**@", url)
    try:
        _check_uri(url)
    except ValueError as e:
        raise BadSetting(
            f"AMQP_URL={shown!r} is not an AMQP URI like amqp://user:password@host:5672/vhost ({e})"
        ) from None


def _check_uri(url: str) -> None:
    """Raise ValueError saying what is wrong with the AMQP URI ``url``; the reasons never quote
    a part of the URL, which could be a piece of the password (a ``#`` in it ends the URI's
    authority there, and urlparse would call the rest of the password a port)."""
    try:
        parsed = urlparse(url)
    except ValueError:
        raise ValueError("a broken [IPv6] host") from None
    if parsed.scheme not in ("amqp", "amqps"):
        raise ValueError("the scheme must be amqp:// or amqps://")
    if "#" in url:
        raise ValueError("'#' ends a URI: write it as %23 (in a password, say)")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:  # kombu would read it as "not given" and connect to 5672
        raise ValueError("port 0: the port must be a number from 1 to 65535")
    if not parsed.hostname:
        raise ValueError("no host")
    try:
        parsed.hostname.encode("idna")
    except UnicodeError:
        raise ValueError(
            f"host {parsed.hostname!r} is not a host name (an empty or over-long label)"
        ) from None
    if parsed.username is not None and parsed.password is None:
        raise ValueError("a user name without a password: amqp://user:password@host")
    _check_query(parsed.query)
