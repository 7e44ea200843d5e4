"""Tutorial 1 consumer: a Celery worker on ``celery.hello`` printing every message.

python -m celery_impl.receive

Each ``celery_impl.hello`` task prints `` [x] Received <text>`` on stdout
(``worker_redirect_stdouts=False``); Celery's own log lines (warnings and up) go to stderr.
"""

from __future__ import annotations

from celery_impl.broker import connect, declare, hello_queue, hello_queue_entity
from celery_impl.consumer import run_worker, worker_argv
from shared import cli, settings
from shared.errors import WorkerCannotGoOn


def main() -> int:
    queue = hello_queue()
    with connect() as conn:
        declare(conn, hello_queue_entity())
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}", flush=True)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    argv = worker_argv(queue, f"receive-{settings.load().worker_name}", loglevel="WARNING")
    code = run_worker(["--quiet", *argv])
    if code:
        raise WorkerCannotGoOn(f"the Celery worker stopped on an error (exit {code}; see above)")
    return 0


if __name__ == "__main__":
    cli.run(main)
