"""The Celery implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from celery_impl import new_task
from celery_impl import settings as celery_settings
from shared.impl import Implementation, WorkerSpec
from shared.process import Command


class CeleryImplementation(Implementation):
    """Celery over RabbitMQ (py-amqp transport), one prefork process per worker."""

    name = "celery"
    package = "celery_impl"
    supports_early_ack = True  # task_acks_late off: Celery's default, the negative control
    unlimited_prefetch = 0  # worker_prefetch_multiplier=0: no basic.qos limit

    def task_queue(self) -> str:
        return celery_settings.task_queue()

    def hello_queue(self) -> str:
        return celery_settings.hello_queue()

    def publish_work(
        self,
        bodies: Sequence[str],
        *,
        amqp_url: str | None = None,
        queue: str | None = None,
        declare: bool = True,
    ) -> list[str]:
        envelopes = new_task.publish(bodies, amqp_url=amqp_url, queue=queue, declare_queue=declare)
        return [e.message_id for e in envelopes]

    def worker_command(self, spec: WorkerSpec) -> Command:
        argv = [
            sys.executable, "-m", "celery_impl.worker",
            "--prefetch", str(spec.prefetch),
            "--slowdown", str(spec.slowdown),
            "--name", spec.name,
        ]  # fmt: skip
        if spec.early_ack:
            argv.append("--early-ack")
        return Command(argv, spec.environment())

    def receive_command(self) -> Command:
        return Command([sys.executable, "-m", "celery_impl.receive"])


IMPLEMENTATION = CeleryImplementation()
