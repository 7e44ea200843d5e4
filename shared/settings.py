"""Settings shared by every implementation, read from the environment in one place.

Every program in mqlab (producers, workers, the lab, the tests) reads its connection and
delivery settings through :func:`load`, so one environment variable changes all three
implementations the same way.

==========================  ==========================================  =====================
variable                    meaning                                     default
==========================  ==========================================  =====================
``AMQP_URL``                the broker (RabbitMQ URI spec)              the ``mqlab broker up``
                                                                        node if one runs, else
                                                                        ``amqp://guest:guest@localhost:5672/%2F``
``MQLAB_PREFETCH``          consumer prefetch count, 0 = unlimited      ``1``
``MQLAB_CONFIRMS``          publisher confirms on (``1``) or off        ``1``
``MQLAB_HEARTBEAT``         AMQP heartbeat timeout, seconds             ``60``
``MQLAB_CONNECT_TIMEOUT``   TCP connect / handshake timeout, seconds    ``5``
``MQLAB_RECONNECT_SECONDS`` how long a worker tries to reconnect after  ``60``
                            losing its connection, seconds
``MQLAB_DOT_SECONDS``       seconds of work per ``.`` in a work body    ``1.0``
``MQLAB_SLOWDOWN``          factor applied to this worker's work time   ``1.0``
``MQLAB_WORKER_NAME``       name this worker writes to the journal      ``<host>-<pid>``
``MQLAB_JOURNAL``           path of the SQLite execution journal        unset (no journal)
``MQLAB_QUEUE_PREFIX``      prepended to every queue name               ``""``
==========================  ==========================================  =====================
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from shared import broker_up

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


def _flag(value: str) -> bool:
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """A snapshot of mqlab's settings.

    Attributes:
        amqp_url: AMQP 0-9-1 URI of the broker.
        prefetch: consumer prefetch count (``basic.qos``); ``0`` means unlimited.
        confirms: whether producers wait for publisher confirms.
        heartbeat: AMQP heartbeat timeout in seconds (0 disables heartbeats).
        connect_timeout: seconds to wait for the TCP connection and AMQP handshake.
        reconnect_seconds: how long a worker keeps trying to reconnect after its connection
            dropped (a broker restart) before it gives up with an error.
        dot_seconds: seconds of simulated work per ``.`` in a work body (tutorial 2).
        slowdown: factor this worker multiplies its work time by (fair-dispatch demos).
        worker_name: the name this process writes into the journal.
        journal: path of the execution journal, or ``None`` for no journal.
        queue_prefix: prefix for every queue name, so test runs can use their own namespace.
    """

    amqp_url: str
    prefetch: int
    confirms: bool
    heartbeat: int
    connect_timeout: float
    reconnect_seconds: float
    dot_seconds: float
    slowdown: float
    worker_name: str
    journal: str | None
    queue_prefix: str

    def queue(self, name: str) -> str:
        """Return the queue name ``name`` with this run's prefix applied."""
        return f"{self.queue_prefix}{name}"


def load() -> Settings:
    """Read :class:`Settings` from the environment (see the module docstring for variables).

    ``AMQP_URL`` unset means the node ``mqlab broker up`` started (:mod:`shared.broker_up`),
    else RabbitMQ's default ``localhost:5672``.

    Raises:
        ValueError: a numeric variable does not parse.
    """
    env = os.environ
    return Settings(
        amqp_url=env.get("AMQP_URL") or broker_up.amqp_url() or DEFAULT_AMQP_URL,
        prefetch=int(env.get("MQLAB_PREFETCH", "1")),
        confirms=_flag(env.get("MQLAB_CONFIRMS", "1")),
        heartbeat=int(env.get("MQLAB_HEARTBEAT", "60")),
        connect_timeout=float(env.get("MQLAB_CONNECT_TIMEOUT", "5")),
        reconnect_seconds=float(env.get("MQLAB_RECONNECT_SECONDS", "60")),
        dot_seconds=float(env.get("MQLAB_DOT_SECONDS", "1.0")),
        slowdown=float(env.get("MQLAB_SLOWDOWN", "1.0")),
        worker_name=env.get("MQLAB_WORKER_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        journal=env.get("MQLAB_JOURNAL") or None,
        queue_prefix=env.get("MQLAB_QUEUE_PREFIX", ""),
    )
