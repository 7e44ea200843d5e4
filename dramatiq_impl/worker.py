"""Tutorial 2 worker: Dramatiq's own worker on ``dramatiq.task_queue``, one task at a time.

    python -m dramatiq_impl.worker                       # 1 process, 1 thread, prefetch 1
    python -m dramatiq_impl.worker --prefetch 0          # "unlimited" (65535, Dramatiq's cap)
    python -m dramatiq_impl.worker --slowdown 4 --name slow

This checks the broker (connection, credentials, the durable queue and its ``.DQ``/``.XQ``
siblings) and then *becomes* the native worker, in the same process::

    dramatiq dramatiq_impl.actors -p 1 -t 1 -Q dramatiq.task_queue --worker-fork-timeout 1000

(``--concurrency N`` is ``-t N``, with prefetch ``N x --prefetch`` per process)

with ``dramatiq_queue_prefetch``, ``MQLAB_SLOWDOWN`` and ``MQLAB_WORKER_NAME`` set. The main
process forks ``-p`` worker processes with ``-t`` threads each (``dramatiq/cli.py``):

* A message is acked after the actor returns (Dramatiq acks late, always), so a worker killed
  mid-task leaves it unacked and RabbitMQ redelivers it to another consumer, ``redelivered``.
* Prefetch = threads x ``--prefetch`` (1): RabbitMQ gives a worker a new message only when a
  thread is free.
* SIGTERM or Ctrl+C to the main process: it forwards SIGTERM to its worker processes, which
  finish the task in hand, ack it, and close their channels (prefetched messages go back to the
  queue). A second SIGTERM (more than 2 s later) kills at once.
* An actor that raises is retried ``MAX_RETRIES`` times with backoff (through ``.DQ``), then
  dead-lettered to ``.XQ``.
"""

from __future__ import annotations

import os
import sys

from dramatiq_impl import actors
from dramatiq_impl.broker import UNLIMITED_PREFETCH, declare, first_node, task_queue
from shared import cli, settings


def main() -> int:
    parser = cli.worker_parser("python -m dramatiq_impl.worker", __doc__)
    parser.add_argument("--processes", "-p", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--threads",
        "-t",
        type=int,
        dest="concurrency",
        help="threads per process (= --concurrency)",
    )
    args = cli.parse_worker_args(parser)
    settings.load()  # every setting checked before anything starts
    if args.processes < 1:
        parser.error("--processes must be 1 or more")

    queue = task_queue()
    # Connect and declare, failing fast: unreachable broker, wrong password, 406.
    declare(actors.broker, queue)
    actors.broker.close()
    print(f" [*] {args.name} connected to {first_node(actors.broker)}", flush=True)

    env = {
        **os.environ,
        # Dramatiq's default (unset or 0): 2 x threads; there is no "unlimited" value.
        # Per process: prefetch per slot x threads, so every thread can hold a message.
        "dramatiq_queue_prefetch": str(
            cli.total_prefetch(args.prefetch, args.concurrency) or UNLIMITED_PREFETCH
        ),
        "MQLAB_SLOWDOWN": str(args.slowdown),
        "MQLAB_WORKER_NAME": args.name,
    }
    argv = [
        sys.executable, "-m", "dramatiq", "dramatiq_impl.actors",
        "--processes", str(args.processes), "--threads", str(args.concurrency),
        "--queues", queue,
        # Dramatiq's main process waits up to this long (default 30 s) for each worker process
        # to say it booted, even if that process has exited meanwhile: a consumer thread that
        # meets a refusal (403 on basic.consume, dramatiq_impl.broker) ends its process before
        # the signal, so the worker took 30 s to exit (seen once under load). No fork
        # processes here wait on it.
        "--worker-fork-timeout", "1000",
    ]  # fmt: skip
    print(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C", flush=True)
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    cli.run(main)
