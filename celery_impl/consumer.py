"""Celery's worker consumer: per-consumer prefetch, every processing fault parked, and a non-zero
exit when the broker refuses the worker.

**Per-consumer prefetch** (``basic.qos`` with ``global=false``). Against RabbitMQ 3.3+, Celery
applies its prefetch count with ``global=true`` (``Tasks.qos_global``:
``not connection.qos_semantics_matches_spec``), which RabbitMQ reads as a limit shared by every
consumer on the channel; the consumer itself then shows prefetch 0 (unlimited) in the
management API. Celery already switches to ``global=false`` for quorum queues
(``worker_detect_quorum_queues``). Each mqlab worker consumes exactly one queue on its channel,
so both give the same limit; per-consumer is what the tutorial's ``basic_qos(prefetch_count=1)``
does, and what the management API reports per consumer (RabbitMQ docs, "Consumer Prefetch").
Plugged in with Celery's documented ``worker_consumer`` setting.

As with quorum queues, the prefetch count is then static: RabbitMQ applies a later ``basic.qos``
only to consumers created afterwards, so ``worker_enable_prefetch_count_reduction`` is off and
ETA/countdown tasks (which raise the prefetch count) are not used here.

**Processing faults park the message** (:mod:`shared.poison`). Celery's consumer already rejects
(without requeue, so RabbitMQ dead-letters them to ``<queue>.dead``) a message of an unknown
format (``on_unknown_message``), of an unknown task (``on_unknown_task``) or an invalid one
(``on_invalid_task``); here they say so in our one line instead of a multi-line log that calls
the message "discarded". Two gaps are closed:

* ``on_decode_error`` *acks* a body that does not decode ("so it doesn't enter a loop"): the
  message is gone. Here it is rejected, so it is parked.
* A message's own fields never steer the worker: :func:`celery_impl.admission.refusal` decides,
  before Celery's handler sees it, what of each task message is honoured (an allow-list) and
  parks the rest (an ETA, a past ``expires``, a canvas, protocol 1, a body of the wrong shape).
  Anything else Celery's handler raises for one message (which would propagate into the
  consumer's event loop and stop the worker with "Unrecoverable error" and exit code 0, the
  message back first in line) is caught, and the message is parked with one line while the
  worker goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import amqp.exceptions
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.exceptions import DecodeError
from kombu.message import Message

from celery_impl import admission
from celery_impl.broker import app, refused_by_broker, task_queue
from shared import poison, queues
from shared.errors import MqlabError, home_node_down

FATAL: list[MqlabError] = []
"""The broker's refusal that stopped this process's consumer, for the worker to report."""

REFUSALS = (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed, amqp.exceptions.NotFound)
"""403, 530 and 404: the broker refuses the worker; retrying cannot help (but see
:func:`refusal`)."""


def refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`REFUSALS`, other than a 404 that says a classic queue's
    home node is down (:func:`shared.errors.home_node_down`): that queue comes back with its
    node, so it is retried like a lost connection."""
    if not isinstance(exc, REFUSALS):
        return False
    return not home_node_down(int(exc.reply_code or 0), str(exc.reply_text or ""))


def dead_letter_queue(queue: str | None) -> str | None:
    """The dead-letter queue of ``queue`` if it is the work queue (the hello queue has none:
    tutorial 1 keeps nothing aside), else ``None``."""
    return queues.dead_letter_queue(queue) if queue and queue == task_queue() else None


def park(message: Message, why: str) -> None:
    """Reject ``message`` without requeue (RabbitMQ dead-letters it to the dead-letter queue
    the consumer declared with the work queue: :class:`celery_impl.broker.WorkQueue`), then
    say so in one line; nothing if it was already acknowledged or rejected."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    message_id = message.properties.get("message_id") or headers.get("id")
    if not message.acknowledged:
        message.reject(requeue=False)
    poison.report(message_id, dead_letter_queue(message.delivery_info.get("routing_key")), why)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose broker connection asks for per-consumer ``basic.qos``, which
    parks what it cannot process, which stops the worker with a non-zero exit code when the
    broker refuses it, and which starts no native delayed delivery."""

    class Blueprint(CeleryConsumer.Blueprint):  # type: ignore[misc]
        """Celery's consumer steps without ``DelayedDelivery``.

        Celery 5.5+ starts native delayed delivery whenever one of the worker's queues is a
        quorum queue (``DelayedDelivery.include_if``: ``detect_quorum_queues``, whatever
        ``worker_detect_quorum_queues`` says): it declares 28 ``celery_delayed_*`` quorum
        queues and their exchanges, which route a due task back through its queue's exchange.
        Ours is the default exchange (tutorial routing), and ETA/countdown messages are refused
        (:mod:`celery_impl.admission`), so they would serve nothing, while each quorum queue is
        a Raft group on every node that a cluster restart must recover.
        """

        default_steps = [
            step
            for step in CeleryConsumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

    def connect(self) -> Any:
        """Celery's connection for consuming, declared to follow the spec's qos semantics."""
        conn = super().connect()
        conn.transport.qos_semantics_matches_spec = lambda connection: True
        return conn

    def on_unknown_message(self, body: Any, message: Message) -> None:
        """Not a Celery task message (no task name): park it (Celery rejects it too, with a
        warning that says it was discarded)."""
        park(message, "not a Celery task message (no task name)")

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        """A task this worker does not know: park it (Celery rejects it too, logging that it
        was "ignored and discarded", which the dead-letter exchange makes untrue)."""
        park(message, f"unknown task {exc}")

    def on_invalid_task(self, body: Any, message: Message, exc: Exception) -> None:
        """A task message Celery finds invalid (``InvalidTaskError``): park it."""
        park(message, f"invalid task message ({poison.describe(exc)})")

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        """A body that does not decode: park it (Celery acks it, losing it)."""
        park(message, f"the body does not decode ({poison.describe(exc)})")

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Message], None]:
        """Celery's handler for each task message, wrapped so that no message ends the worker.

        Celery's own handling stays first (unknown format, unknown task, invalid task: rejected
        and so parked); whatever it raises besides is parked here.
        """
        handle: Callable[[Message], None] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Message) -> None:
            try:
                try:
                    why = admission.refusal(message)  # what of the message is honoured
                except DecodeError as e:
                    self.on_decode_error(message, e)
                    return
                if why:
                    park(message, why)
                    return
                handle(message)
            except Exception as e:  # a protocol error of this one message
                park(message, f"not a valid Celery task message ({poison.describe(e)})")

        return on_task_received

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        """Celery's handler for a recoverable error, except that a refusal is not one.

        With ``broker_channel_error_retry`` (:mod:`celery_impl.broker`: the 406 consumer
        timeout) every channel error counts as recoverable, and py-amqp counts 403 (a login
        refused after a password change, no read permission) as a channel error, so Celery
        would retry it forever; re-raised here, :meth:`start` stops the worker.
        """
        if refusal(exc):
            raise exc
        super().on_connection_error_before_connected(exc)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        """As :meth:`on_connection_error_before_connected`, once connected. A 404 for a
        classic queue whose home node is down is retried once a second for as long as the node
        is away (Celery bounds connection retries, ``broker_connection_max_retries``, not
        channel errors)."""
        if refusal(exc):
            raise exc
        if isinstance(exc, REFUSALS):  # a classic queue's home node is down: wait for it
            time.sleep(1.0)
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
            raise SystemExit(FATAL[-1].exit_code) from None


def worker_argv(
    queue: str,
    name: str,
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    loglevel: str = "INFO",
) -> list[str]:
    """The ``celery worker`` arguments for one worker consuming ``queue`` with ``concurrency``
    pool processes (or threads).

    Gossip, mingle and the worker heartbeat are cluster chatter over extra exchanges that the
    work queue does not need (Celery docs, "Workers Guide").
    """
    return [
        "worker",
        "--queues", queue,
        "--concurrency", str(concurrency),
        "--pool", pool,
        "--hostname", f"{name}@%h",
        "--loglevel", loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]  # fmt: skip


def run_worker(argv: list[str]) -> int:
    """Run ``celery worker`` with ``argv`` in this process and return its exit code.

    ``app.worker_main`` (and ``app.start``) drop it: click's ``main`` with
    ``standalone_mode=False`` returns the code of ``ctx.exit(worker.exitcode)`` and
    ``Celery.start`` ignores that return value, so an "Unrecoverable error" (code 1) would look
    like a clean stop (0). This is ``Celery.start`` keeping the code.

    Raises:
        shared.errors.MqlabError: the broker refused the consumer (403, 404, 530:
            :data:`celery_impl.consumer.FATAL`).
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app  # the --app option, as Celery.start sets it
    try:
        code = celery_command.main(args=argv, standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    if FATAL:  # the broker refused the consumer: its one-line error
        raise FATAL[0]
    return code if isinstance(code, int) else 0
