"""Tutorial 2 worker: a Celery worker on ``celery.task_queue``, one task at a time, late ack.

    python -m celery_impl.worker                      # prefetch 1: fair dispatch
    python -m celery_impl.worker --concurrency 4      # four pool processes, prefetch 4
    python -m celery_impl.worker -c 4 --pool threads  # four threads instead
    python -m celery_impl.worker --prefetch 0         # unlimited: plain round-robin
    python -m celery_impl.worker --slowdown 4 --name slow

It is the native worker, run in this process, equivalent to::

    celery -A celery_impl worker -Q celery.task_queue -c 1 -P prefork -n w1@%h \\
        --without-gossip --without-mingle --without-heartbeat

* ``task_acks_late``: the message is acknowledged only after the task returns, so a worker that
  dies mid-task leaves it unacked and RabbitMQ redelivers it, flagged ``redelivered``.
* ``task_reject_on_worker_lost``: when only the pool child dies, the message is requeued, not
  acked as failed.
* ``worker_prefetch_multiplier`` (``--prefetch``, per slot) × concurrency (``-c``, pool
  processes or threads) is the ``basic.qos`` prefetch count; ``--prefetch 0`` sets the
  multiplier to 0, which Celery takes as "no limit".
* A message it cannot process is parked in ``celery.task_queue.dead`` with one line, and the
  worker goes on (:mod:`celery_impl.consumer`, :class:`celery_impl.tasks.ParkingTask`).
* SIGTERM or Ctrl+C, to the process or to its whole group: a warm shutdown, exit 0; the task in
  hand is finished and acked; messages prefetched but not started go back to the queue when the
  connection closes (:mod:`celery_impl.stopping`).

Before starting, the worker connects once and declares its queue, so a wrong URL or password or
a non-durable queue of the same name (406) is one clear line and a non-zero exit.
"""

from __future__ import annotations

import sys

from celery_impl import stopping, tasks
from celery_impl.broker import app, connect, declare_work_queue, task_queue
from celery_impl.consumer import run_worker, worker_argv
from shared import cli, settings
from shared.errors import WorkerCannotGoOn

POOLS = ("prefork", "threads")
"""Celery execution pools offered here: processes (Celery's default) or threads."""


def main() -> int:
    parser = cli.worker_parser("python -m celery_impl.worker", __doc__)
    parser.add_argument(
        "--early-ack",
        action="store_true",
        help="task_acks_late off: ack on receipt (loses the task in hand if the worker dies)",
    )
    parser.add_argument("--pool", "-P", choices=POOLS, default="prefork", help="execution pool")
    args = cli.parse_worker_args(parser)
    settings.load()  # every setting checked before anything starts

    queue = task_queue()
    with connect() as conn:  # connect once, fail fast
        host, port = conn.connection.sock.getpeername()[:2]  # the node kombu connected to
        print(f" [*] {args.name} connected to {settings.node_address(host, port)}", flush=True)
        declare_work_queue(conn, queue)  # durable, with its dead-letter queue
    # qos: prefetch per slot x pool size; set before the worker starts, read once.
    app.conf.worker_prefetch_multiplier = args.prefetch
    app.conf.task_acks_late = not args.early_ack
    # The callback is the task (celery_impl.tasks.work); its options pass once, here, and the
    # prefork children inherit them.
    tasks.configure(slowdown=args.slowdown, worker_name=args.name)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C", flush=True)
    code = run_worker(worker_argv(queue, args.name, concurrency=args.concurrency, pool=args.pool))
    if code and not stopping.stopped_by_ctrl_c(code):  # Celery exits 1 after a clean Ctrl+C
        raise WorkerCannotGoOn(f"the Celery worker stopped on an error (exit {code}; see above)")
    print(f" [*] {args.name} stopped", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
