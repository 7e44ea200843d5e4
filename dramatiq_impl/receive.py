"""Tutorial 1 consumer: print every message from the ``dramatiq.hello`` queue.

python -m dramatiq_impl.receive

A Dramatiq ``Worker`` run in this process (one thread) on the hello queue only; the ``hello``
actor prints `` [x] Received <text>``. Ctrl+C or SIGTERM stops it gracefully.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from dramatiq import Worker

from dramatiq_impl import actors
from dramatiq_impl.broker import declare, hello_queue
from shared import cli, settings


def main() -> int:
    queue = hello_queue()
    # Connect and declare, failing fast: unreachable broker, wrong password, 406.
    declare(actors.broker, queue)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    worker = Worker(actors.broker, queues={queue}, worker_threads=1)
    worker.start()
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}", flush=True)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    while not stopping.wait(0.2):
        pass
    worker.stop()
    actors.broker.close()
    return 0


if __name__ == "__main__":
    cli.run(main)
