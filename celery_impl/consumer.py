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


ETA_REFUSED = (
    "refused a message with an ETA/countdown on the work queue ({id}): the worker would hold it "
    "unacked until its time, in its only prefetch slot, and serve nothing behind it; "
    "it goes to the dead-letter queue"
)


def refuse_eta(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default task strategy (``celery.worker.strategy.default``), except that a
    message with an ``eta`` (``apply_async(eta=...)`` or ``countdown=...``) is rejected without
    requeue, which dead-letters it, instead of being held unacked until its time.

    Celery keeps an ETA message unacked in the worker and raises the prefetch count to fetch
    the next one; with per-consumer ``basic.qos`` (this module's :class:`Consumer`, and quorum
    queues) RabbitMQ applies the higher count only to new consumers, so a prefetch-1 worker
    would serve nothing until the ETA (and past ``consumer_timeout`` lose its channel). Set as
    the work task's ``Strategy`` (:mod:`celery_impl.tasks`).
    """
    from celery.worker.strategy import default

    handler = default(task, app, consumer, **kwargs)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any) -> Any:
        if (message.headers or {}).get("eta"):
            logger.error(ETA_REFUSED.format(id=(message.headers or {}).get("id")))
            message.reject(requeue=False)
            return None
        return handler(message, body, ack, reject, callbacks)

    return task_message_handler
