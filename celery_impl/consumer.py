"""Celery's worker consumer with per-consumer prefetch (``basic.qos`` with ``global=false``).

Against RabbitMQ 3.3+, Celery applies its prefetch count with ``global=true``
(``Tasks.qos_global``: ``not connection.qos_semantics_matches_spec``), which RabbitMQ reads as
a limit shared by every consumer on the channel; the consumer itself then shows prefetch 0
(unlimited) in the management API. Celery already switches to ``global=false`` for quorum
queues (``worker_detect_quorum_queues``). Each mqlab worker consumes exactly one queue on its
channel, so both give the same limit; per-consumer is what the tutorial's
``basic_qos(prefetch_count=1)`` does, and what the management API reports per consumer (RabbitMQ
docs, "Consumer Prefetch"). Plugged in with Celery's documented ``worker_consumer`` setting.

As with quorum queues, the prefetch count is then static: RabbitMQ applies a later ``basic.qos``
only to consumers created afterwards, so ``worker_enable_prefetch_count_reduction`` is off and
ETA/countdown tasks (which raise the prefetch count) are not used here.
"""

from __future__ import annotations

from typing import Any

import amqp.exceptions
from celery.worker.consumer import Consumer as CeleryConsumer

from celery_impl.settings import refused_by_broker
from shared.errors import MqlabError

FATAL: list[MqlabError] = []
"""The broker's refusal that stopped this process's consumer, for the worker to report."""


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose broker connection asks for per-consumer ``basic.qos``."""

    def connect(self) -> Any:
        """Celery's connection for consuming, declared to follow the spec's qos semantics."""
        conn = super().connect()
        conn.transport.qos_semantics_matches_spec = lambda connection: True
        return conn

    def start(self) -> Any:
        """Celery's consumer loop, stopped by a refusal it cannot recover from.

        A 403 on ``basic.consume`` (no read permission) or a 404 is not a connection error to
        Celery: it would log "Unrecoverable error" with a traceback and the worker would exit
        0. Here the refusal is kept in :data:`FATAL` and the worker stops with ``SystemExit``,
        so ``worker.py`` reports it in one line and a non-zero exit.
        """
        try:
            return super().start()
        except (
            amqp.exceptions.AccessRefused,
            amqp.exceptions.NotAllowed,
            amqp.exceptions.NotFound,
        ) as e:
            FATAL.append(refused_by_broker(e, self.app.connection_for_read(), "consume"))
            raise SystemExit(1) from None
