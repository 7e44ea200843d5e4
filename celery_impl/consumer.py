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

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose broker connection asks for per-consumer ``basic.qos``."""

    def connect(self) -> Any:
        """Celery's connection for consuming, declared to follow the spec's qos semantics."""
        conn = super().connect()
        conn.transport.qos_semantics_matches_spec = lambda connection: True
        return conn
