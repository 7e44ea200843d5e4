"""The pika implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from raw_pika import new_task
from raw_pika import settings as pika_settings
from shared.impl import Implementation, WorkerSpec
from shared.process import Command


class PikaImplementation(Implementation):
    """Hand-written pika, as in the RabbitMQ tutorials."""

    name = "pika"
    package = "raw_pika"
    supports_early_ack = True  # --auto-ack, tutorial 1's consumer mode
    unlimited_prefetch = 0  # no basic.qos at all

    def task_queue(self) -> str:
        return pika_settings.task_queue()

    def hello_queue(self) -> str:
        return pika_settings.hello_queue()

    def publish_work(
        self,
        bodies: Sequence[str],
        *,
        amqp_url: str | None = None,
        queue: str | None = None,
        declare: bool = True,
    ) -> list[str]:
        envelopes = new_task.publish(bodies, amqp_url=amqp_url, queue=queue, declare=declare)
        return [e.message_id for e in envelopes]

    def worker_command(self, spec: WorkerSpec) -> Command:
        argv = [
            sys.executable, "-m", "raw_pika.worker",
            "--prefetch", str(spec.prefetch),
            "--slowdown", str(spec.slowdown),
            "--name", spec.name,
        ]  # fmt: skip
        if spec.early_ack:
            argv.append("--auto-ack")
        return Command(argv, spec.environment())

    def receive_command(self) -> Command:
        return Command([sys.executable, "-m", "raw_pika.receive"])


IMPLEMENTATION = PikaImplementation()
