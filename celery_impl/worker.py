"""Tutorial 2 worker: a Celery worker on ``celery.task_queue``, one task at a time, late ack.

    python -m celery_impl.worker                      # prefetch 1: fair dispatch
    python -m celery_impl.worker --prefetch 0         # unlimited: plain round-robin
    python -m celery_impl.worker --slowdown 4 --name slow

It is the native worker, run in this process, equivalent to::

    celery -A celery_impl worker -Q celery.task_queue -c 1 -n w1@%h \\
        --without-gossip --without-mingle --without-heartbeat

* ``task_acks_late``: the message is acknowledged only after the task returns, so a worker that
  dies mid-task leaves it unacked and RabbitMQ redelivers it, flagged ``redelivered``.
* ``task_reject_on_worker_lost``: when only the pool child dies, the message is requeued, not
  acked as failed.
* ``worker_prefetch_multiplier`` × concurrency (``-c 1``) is the ``basic.qos`` prefetch count;
  ``--prefetch 0`` sets the multiplier to 0, which Celery takes as "no limit".
* SIGTERM or Ctrl+C: a warm shutdown, the task in hand is finished and acked; messages
  prefetched but not started go back to the queue when the connection closes.

Before starting, the worker connects once and declares its queue, so a wrong URL or password or
a non-durable queue of the same name (406) is one clear line and a non-zero exit.
"""

from __future__ import annotations

import os

from celery_impl import consumer
from celery_impl.settings import EARLY_ACK_ENV, app, connect, declare_work_queue, task_queue
from shared import cli


def worker_argv(queue: str, name: str, *, loglevel: str = "INFO") -> list[str]:
    """The ``celery worker`` arguments for one single-process worker consuming ``queue``.

    Gossip, mingle and the worker heartbeat are cluster chatter over extra exchanges that the
    work queue does not need (Celery docs, "Workers Guide").
    """
    return [
        "worker",
        "--queues", queue,
        "--concurrency", "1",
        "--pool", "prefork",
        "--hostname", f"{name}@%h",
        "--loglevel", loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]  # fmt: skip


def run_worker(argv: list[str]) -> int:
    """Run ``celery worker`` with ``argv`` in this process; return its exit code.

    Raises:
        shared.errors.MqlabError: the broker refused the consumer (403 without read
            permission: :data:`celery_impl.consumer.FATAL`), which Celery would log as an
            "Unrecoverable error" traceback and then exit 0.
    """
    try:
        app.worker_main(argv)
        code: int | str | None = 0
    except SystemExit as e:
        code = e.code
    if consumer.FATAL:
        raise consumer.FATAL[0]
    return code if isinstance(code, int) else 1


def main() -> int:
    parser = cli.worker_parser("python -m celery_impl.worker", __doc__)
    parser.add_argument(
        "--early-ack",
        action="store_true",
        help="task_acks_late off: ack on receipt (loses the task in hand if the worker dies)",
    )
    args = cli.parse_worker_args(parser)

    # The pool children inherit these; the tasks read them through shared.settings.
    os.environ["MQLAB_PREFETCH"] = str(args.prefetch)
    os.environ["MQLAB_SLOWDOWN"] = str(args.slowdown)
    os.environ["MQLAB_WORKER_NAME"] = args.name
    if args.early_ack:
        os.environ[EARLY_ACK_ENV] = "1"
    # Before the app is finalized, so the task classes pick them up.
    app.conf.worker_prefetch_multiplier = args.prefetch
    app.conf.task_acks_late = not args.early_ack

    queue = task_queue()
    with connect() as conn:
        declare_work_queue(conn, queue)
    print(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C", flush=True)
    code = run_worker(worker_argv(queue, args.name))
    print(f" [*] {args.name} stopped", flush=True)
    return code


if __name__ == "__main__":
    cli.run(main)
