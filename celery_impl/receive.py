"""Tutorial 1 consumer: a Celery worker on ``celery.hello`` printing every message.

python -m celery_impl.receive

Each ``celery_impl.hello`` task prints `` [x] Received <text>`` on stdout
(``worker_redirect_stdouts=False``); Celery's own log lines (warnings and up) go to stderr.
Ctrl+C or SIGTERM is Celery's warm shutdown and exits 0; Celery itself exits 1 after Ctrl+C,
which :func:`celery_impl.stopping.stopped_by_ctrl_c` tells from a real error.
"""

from __future__ import annotations

from celery_impl import stopping
from celery_impl.broker import connect, declare, hello_queue, hello_queue_entity
from celery_impl.consumer import run_worker, worker_argv
from shared import cli, settings
from shared.errors import WorkerCannotGoOn


def main() -> int:
    cli.receive_args("python -m celery_impl.receive", __doc__)
    queue = hello_queue()
    with connect() as conn:
        declare(conn, hello_queue_entity())
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}", flush=True)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    argv = worker_argv(queue, f"receive-{settings.load().worker_name}", loglevel="WARNING")
    code = run_worker(["--quiet", *argv])
    if code and not stopping.stopped_by_ctrl_c(code):  # Celery exits 1 after a clean Ctrl+C
        raise WorkerCannotGoOn(f"the Celery worker stopped on an error (exit {code}; see above)")
    return 0


if __name__ == "__main__":
    cli.run(main)
