"""The Celery app and the settings that give it the RabbitMQ tutorials' guarantees.

Celery's defaults are tuned for throughput, not for "no message is lost": out of the box it acks
a task message *before* running it, prefetches four messages per process, and publishes without
publisher confirms. Every setting below that changes a default says which guarantee the default
would break. Queue names follow the tutorials with a ``celery.`` prefix (``celery.hello``,
``celery.task_queue``) so they never clash with the pika queues, plus ``MQLAB_QUEUE_PREFIX``.

Connection settings come from :mod:`shared.settings` (``AMQP_URL``...). The app is configured at
import time from the environment, which is how ``celery -A celery_impl worker`` sees it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import amqp.exceptions
import kombu.exceptions
from celery import Celery
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from shared import cli, queues, settings
from shared.errors import (
    AccessRefused,
    MqlabError,
    QueueMismatch,
    queue_mismatch_message,
    refused,
    unreachable,
)

HELLO_QUEUE = "celery.hello"
TASK_QUEUE = "celery.task_queue"

REJECT_ON_WORKER_LOST_ENV = "MQLAB_CELERY_REJECT_ON_WORKER_LOST"
"""Set to ``0`` to turn ``task_reject_on_worker_lost`` off: the negative control of the tests."""

EARLY_ACK_ENV = "MQLAB_CELERY_EARLY_ACK"
"""Set to ``1`` to turn ``task_acks_late`` off (ack on receipt): ``WorkerSpec.early_ack``."""


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


def hello_queue() -> str:
    """The hello-world queue's name (``MQLAB_QUEUE_PREFIX`` applied)."""
    return settings.load().queue(HELLO_QUEUE)


def task_queue() -> str:
    """The work queue's name (``MQLAB_QUEUE_PREFIX`` applied)."""
    return settings.load().queue(TASK_QUEUE)


def durable_queue(name: str, arguments: dict[str, Any] | None = None) -> Queue:
    """A durable queue bound only to the default exchange, as in the tutorials.

    Celery would otherwise create a missing queue together with a direct exchange of the same
    name (``task_create_missing_queues``); with ``Exchange("")`` kombu declares the queue alone
    and Celery publishes through the default exchange with the queue name as routing key.
    ``durable=True`` (kombu's default, spelt out) keeps the queue across a broker restart
    (RabbitMQ docs, "Queues: Durability"). ``arguments`` are the queue's x-arguments
    (kombu ``queue_arguments``); with ``x-queue-type: quorum`` Celery's
    ``worker_detect_quorum_queues`` (default True) sees a quorum queue.
    """
    return Queue(name, Exchange(""), routing_key=name, durable=True, queue_arguments=arguments)


class WorkQueue(Queue):
    """A work queue that declares its dead-letter queue ``<name>.dead`` first, whoever
    declares it: this module's :func:`declare_work_queue`, and Celery's own consumer
    (``celery -A celery_impl worker``, which declares the queues it consumes on each
    connection through kombu's ``Queue.declare``). RabbitMQ drops a message dead-lettered to a
    queue that does not exist (RabbitMQ docs, "Dead Letter Exchanges": no queue bound, the
    message is discarded), so without it the native command lost every parked message."""

    def declare(self, nowait: bool = False, channel: Any = None) -> Any:
        """Declare ``<name>.dead`` (same type, durable), then this queue (kombu's declare)."""
        dead = durable_queue(
            queues.dead_letter_queue(self.name), queues.arguments(settings.load().queue_type)
        )
        dead(channel or self.channel).declare(nowait=nowait)
        return super().declare(nowait=nowait, channel=channel)


def work_queue(name: str) -> Queue:
    """The work queue ``name``: of type ``MQLAB_QUEUE_TYPE``, dead-lettering to
    ``<name>.dead`` what is rejected (and, on quorum queues, what exceeds
    ``MQLAB_DELIVERY_LIMIT`` deliveries); :mod:`shared.queues`. Declaring it declares the
    dead-letter queue too (:class:`WorkQueue`)."""
    s = settings.load()
    arguments = queues.work_queue_arguments(name, s.queue_type, s.delivery_limit)
    return WorkQueue(name, Exchange(""), routing_key=name, durable=True, queue_arguments=arguments)


def hello_queue_entity() -> Queue:
    """The hello queue, durable, of type ``MQLAB_QUEUE_TYPE``."""
    return durable_queue(hello_queue(), queues.arguments(settings.load().queue_type))


def make_app() -> Celery:
    """Build the Celery app from the current environment (see the module docstring)."""
    s = settings.load()
    app = Celery("celery_impl", broker=s.amqp_url, include=["celery_impl.tasks"])
    app.conf.update(
        # -- at-least-once delivery -------------------------------------------------------
        # Default False: the message is acked when the worker *receives* it, so a worker that
        # dies mid-task loses it. True: ack after the task returns (tutorial 2's manual ack).
        task_acks_late=not _flag(EARLY_ACK_ENV, False),
        # Default False: even with acks_late, when the pool child running the task is killed
        # (OOM killer, SIGKILL) Celery marks the task failed with WorkerLostError and ACKS the
        # message, losing it. True: it rejects with requeue, so RabbitMQ redelivers it
        # (Celery docs, "Configuration: task_reject_on_worker_lost").
        task_reject_on_worker_lost=_flag(REJECT_ON_WORKER_LOST_ENV, True),
        # Default True: a task that *raises* is acked, its message gone (only a log line
        # left). False: it is rejected without requeue, so RabbitMQ dead-letters it to
        # <queue>.dead (shared.poison). The task itself runs MAX_ATTEMPTS times before it
        # raises (celery_impl.tasks.ParkingTask). Only a lost worker means redelivery.
        task_acks_on_failure_or_timeout=False,
        # Default False (True from Celery 6): on a lost broker connection, cancel the tasks
        # in hand, whose late ack can no longer reach the broker; RabbitMQ redelivers them.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # -- fair dispatch --------------------------------------------------------------------
        # Default 4: each process reserves four messages, so a long task strands the three
        # behind it on a busy worker. 1 per pool slot = basic.qos(prefetch_count=concurrency),
        # tutorial 2's fair dispatch. worker.py sets it from --prefetch (0 = unlimited).
        worker_prefetch_multiplier=max(s.prefetch, 0),
        worker_concurrency=s.concurrency,
        # Default: basic.qos with global=true against RabbitMQ 3.3+, a channel-wide limit the
        # management API does not show per consumer. Ours applies it per consumer (tutorial 2's
        # basic_qos); the count is then static, so no prefetch reduction after a reconnect.
        worker_consumer="celery_impl.consumer:Consumer",
        worker_enable_prefetch_count_reduction=False,
        # -- the producer side ------------------------------------------------------------------
        # Default: no publisher confirms (py-amqp's confirm_publish=False), so apply_async()
        # returns even if RabbitMQ drops the message (memory/disk alarm). With confirms each
        # publish waits for basic.ack and raises on basic.nack (Celery issue #5410).
        broker_transport_options={"confirm_publish": s.confirms},
        # Default 2 (persistent) already; spelt out because a transient message is lost from
        # a durable queue when the broker restarts (RabbitMQ "Reliability Guide").
        task_default_delivery_mode="persistent",
        task_queues=(work_queue(task_queue()), hello_queue_entity()),
        task_default_queue=task_queue(),
        task_default_exchange="",
        task_default_routing_key=task_queue(),
        task_create_missing_queues=False,
        task_routes={"celery_impl.hello": {"queue": hello_queue()}},
        # Default True: publish retries on connection errors (3 times); we fail at once with a
        # clear error instead (``connect`` below), as the pika producer does.
        task_publish_retry=False,
        # -- failing fast -----------------------------------------------------------------------
        # Defaults: retry_on_startup follows broker_connection_retry (True) and max_retries is
        # 100, so a worker with a wrong URL or password retries for many minutes, silently.
        # The worker checks the broker first (worker.py); after startup it does reconnect, so a
        # broker restart does not end it.
        broker_connection_retry_on_startup=False,
        # kombu counts every node tried as one retry and waits longer only after a full round
        # of the failover list, so with N nodes the budget is 10 rounds, not 10 attempts: a
        # restart of the whole cluster must not use it up in seconds.
        broker_connection_max_retries=10 * len(s.amqp_urls),
        # Default False: a channel error in the consumer (RabbitMQ closing the channel with
        # "406 PRECONDITION_FAILED - delivery acknowledgement ... timed out" past
        # consumer_timeout) is an "Unrecoverable error" that stops the worker. True: Celery
        # reconnects as after a lost connection and goes on; the unacked message is
        # redelivered (Celery docs, "Configuration: broker_channel_error_retry").
        broker_channel_error_retry=True,
        broker_connection_timeout=s.connect_timeout,
        # Several nodes in AMQP_URL ("url1;url2;url3", kombu's failover list): on a lost or
        # refused connection kombu moves to the next node, in order (the default strategy,
        # spelt out; Celery docs, "broker_failover_strategy").
        broker_failover_strategy="round-robin",
        broker_heartbeat=s.heartbeat,
        # -- keeping the worker to the point ------------------------------------------------
        result_backend=None,  # no result backend: the journal records outcomes
        task_ignore_result=True,
        worker_redirect_stdouts=False,  # the tasks' " [x] Received ..." lines go to stdout
        worker_hijack_root_logger=True,
        worker_enable_remote_control=False,  # no celery.pidbox queue per worker
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


with cli.one_line_errors():  # a bad AMQP_URL or setting: one line, before Celery starts
    app = make_app()

# py-amqp logs a WARNING for a confirm that arrives while a failed publish closes its channel;
# the error raised says it all.
logging.getLogger("amqp").setLevel(logging.ERROR)


def connect(amqp_url: str | None = None) -> Connection:
    """A kombu connection to ``amqp_url`` (default ``AMQP_URL``; several nodes joined by ``;``
    are kombu's failover list), one attempt per node of ``MQLAB_CONNECT_TIMEOUT`` seconds;
    the connection carries its user and vhost for error messages.

    Raises:
        BrokerUnreachable: no node answered (refused, timed out, not an AMQP server).
        AccessRefused: wrong user name or password, or no access to the vhost.
    """
    s = settings.load()
    urls = settings.amqp_urls(amqp_url or s.amqp_url)
    # kombu: failover over the ";" list
    conn = app.connection_for_write(";".join(urls), heartbeat=s.heartbeat)
    conn.connect_timeout = s.connect_timeout
    where = ", ".join(f"{Connection(u).hostname}:{Connection(u).port or 5672}" for u in urls)
    try:
        # One attempt per node: kombu switches to the next node after each failure, without
        # sleeping within the first round (kombu ``Connection.ensure_connection``).
        conn.ensure_connection(
            max_retries=len(urls) - 1, timeout=s.connect_timeout * len(urls), interval_start=0
        )
    except (amqp.exceptions.AMQPError, kombu.exceptions.OperationalError) as e:
        conn.release()
        cause = e.__cause__ or e.__context__ or e
        if isinstance(e, amqp.exceptions.NotAllowed) or isinstance(
            cause, amqp.exceptions.NotAllowed
        ):  # 530 on connection.open: no such vhost, or no permissions on it
            raise refused_by_broker(
                e if isinstance(e, amqp.exceptions.NotAllowed) else cause, conn, "connect"
            ) from e
        if isinstance(e, amqp.exceptions.AccessRefused) or isinstance(
            cause, amqp.exceptions.AccessRefused
        ):
            raise AccessRefused(
                f"broker at {where} refused user '{conn.userid}': wrong user name or password, "
                f"or no access to vhost '{conn.virtual_host}'"
            ) from e
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else repr(cause)
        raise unreachable(where, reason) from e
    except OSError as e:
        conn.release()
        raise unreachable(where, e.strerror or repr(e)) from e
    return conn


def declare_work_queue(conn: Connection, name: str) -> None:
    """Declare the dead-letter queue ``<name>.dead`` and the work queue ``name``.

    Raises:
        QueueMismatch: either exists with other arguments (406 PRECONDITION_FAILED).
    """
    queue_type = settings.load().queue_type
    declare(conn, durable_queue(queues.dead_letter_queue(name), queues.arguments(queue_type)))
    declare(conn, work_queue(name))


def declare(conn: Connection, queue: Queue) -> None:
    """Declare ``queue`` (durable) on a fresh channel of ``conn``.

    Raises:
        QueueMismatch: the queue exists with other arguments, e.g. non-durable
            (406 PRECONDITION_FAILED).
        AccessRefused: no configure permission on it (403).
        MqlabError: any other close by the broker, e.g. 541 INTERNAL_ERROR for a new quorum
            queue on a cluster without a majority of its nodes.
    """
    channel = conn.channel()
    try:
        queue(channel).declare()
    except amqp.exceptions.PreconditionFailed as e:
        raise QueueMismatch(queue_mismatch_message(queue.name, str(e.reply_text))) from e
    except amqp.exceptions.AMQPError as e:  # 403, 530; 541 a quorum queue without quorum
        raise refused_by_broker(e, conn, "declare") from e
    finally:
        if channel.is_open:
            channel.close()


def refused_by_broker(error: BaseException, conn: Connection, doing: str) -> MqlabError:
    """The one-line error for a py-amqp error the broker sent (403 ACCESS_REFUSED, 530
    NOT_ALLOWED...) while ``doing`` ``connect``, ``declare``, ``publish`` or ``consume``."""
    code = int(getattr(error, "reply_code", 0) or getattr(error, "code", 0) or 0)
    text = str(getattr(error, "reply_text", "") or error)
    return refused(code, text, str(conn.userid), str(conn.virtual_host), doing)


def watch_blocked(
    conn: Connection, on_blocked: Callable[[str], None], on_unblocked: Callable[[], None]
) -> None:
    """Call ``on_blocked(reason)`` / ``on_unblocked()`` when RabbitMQ blocks or unblocks the
    publishing connection ``conn`` (``connection.blocked``, RabbitMQ docs, "Blocked
    Connection Notifications").

    py-amqp calls its ``on_blocked`` with a fixed text ("connection blocked, see broker logs")
    because it does not decode the method's ``reason`` argument; this connection decodes it
    (argument signature ``s``, a short string), so the error can say "low on memory".
    """
    from amqp import spec

    inner = conn.connection
    inner._METHODS = {
        **inner._METHODS,
        spec.Connection.Blocked: spec.method(spec.Connection.Blocked, "s"),
    }
    inner._callbacks[spec.Connection.Blocked] = on_blocked
    inner._callbacks[spec.Connection.Unblocked] = on_unblocked
