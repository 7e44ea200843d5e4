"""Celery's worker consumer: per-consumer prefetch (``basic.qos`` with ``global=false``), and a
non-zero exit when the broker refuses the worker.

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

import logging
from typing import Any

import amqp.exceptions
from celery.exceptions import WorkerShutdown
from celery.worker.consumer import Consumer as CeleryConsumer

from shared.errors import WorkerCannotGoOn

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose broker connection asks for per-consumer ``basic.qos``, and which
    stops the worker with a non-zero exit code when the broker refuses it."""

    def connect(self) -> Any:
        """Celery's connection for consuming, declared to follow the spec's qos semantics.

        Raises:
            WorkerShutdown: the broker refused the user (403 ACCESS_REFUSED: password changed,
                user deleted, permissions revoked). With ``broker_channel_error_retry`` (see
                :mod:`celery_impl.settings`) Celery would retry that forever, since py-amqp
                counts 403 as a channel error; retrying cannot help, so the worker stops with
                :attr:`WorkerCannotGoOn.exit_code` for a supervisor to see.
        """
        try:
            conn = super().connect()
        except amqp.exceptions.AccessRefused as e:
            logger.critical("broker refused this worker (%s); stopping", e)
            raise WorkerShutdown(WorkerCannotGoOn.exit_code) from e
        conn.transport.qos_semantics_matches_spec = lambda connection: True
        return conn
