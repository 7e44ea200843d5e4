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
from celery.worker.consumer import Consumer as CeleryConsumer

from celery_impl.settings import refused_by_broker
from shared.errors import MqlabError

logger = logging.getLogger(__name__)

FATAL: list[MqlabError] = []
"""The broker's refusal that stopped this process's consumer, for the worker to report."""

REFUSALS = (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed, amqp.exceptions.NotFound)
"""403, 530 and 404: the broker refuses the worker; retrying cannot help."""


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose broker connection asks for per-consumer ``basic.qos``, and which
    stops the worker with a non-zero exit code when the broker refuses it."""

    def connect(self) -> Any:
        """Celery's connection for consuming, declared to follow the spec's qos semantics."""
        conn = super().connect()
        conn.transport.qos_semantics_matches_spec = lambda connection: True
        return conn

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        """Celery's handler for a recoverable error, except that a refusal is not one.

        With ``broker_channel_error_retry`` (:mod:`celery_impl.settings`: the 406 consumer
        timeout) every channel error counts as recoverable, and py-amqp counts 403 (a login
        refused after a password change, no read permission) as a channel error, so Celery
        would retry it forever; re-raised here, :meth:`start` stops the worker.
        """
        if isinstance(exc, REFUSALS):
            raise exc
        super().on_connection_error_before_connected(exc)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        """As :meth:`on_connection_error_before_connected`, once connected."""
        if isinstance(exc, REFUSALS):
            raise exc
        super().on_connection_error_after_connected(exc)

    def start(self) -> Any:
        """Celery's consumer loop, stopped by a refusal it cannot recover from.

        A 403 on ``basic.consume`` (no read permission) or a 404 is not a connection error to
        Celery: it would log "Unrecoverable error" with a traceback and the worker would exit
        0. Here the refusal is kept in :data:`FATAL` and the worker stops with ``SystemExit``,
        so ``worker.py`` reports it in one line and a non-zero exit.
        """
        try:
            return super().start()
        except REFUSALS as e:
            FATAL.append(refused_by_broker(e, self.app.connection_for_read(), "consume"))
            raise SystemExit(1) from None


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
