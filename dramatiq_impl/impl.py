"""The Dramatiq implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dramatiq_impl import new_task
from dramatiq_impl import settings as dq_settings
from shared.impl import Implementation, WorkerSpec
from shared.process import Command


class DramatiqImplementation(Implementation):
    """Dramatiq's ``RabbitmqBroker`` and native worker (``dramatiq dramatiq_impl.actors``)."""

    name = "dramatiq"
    package = "dramatiq_impl"
    supports_early_ack = False  # Dramatiq always acks after the actor returns
    unlimited_prefetch = dq_settings.UNLIMITED_PREFETCH  # dramatiq_queue_prefetch=0 is ignored

    def task_queue(self) -> str:
        return dq_settings.task_queue()

    def hello_queue(self) -> str:
        return dq_settings.hello_queue()

    def queues(self) -> list[str]:
        return [
            *dq_settings.with_siblings(self.hello_queue()),
            *dq_settings.with_siblings(self.task_queue()),
        ]

    def publish_work(
        self,
        bodies: Sequence[str],
        *,
        amqp_url: str | None = None,
        queue: str | None = None,
        declare: bool = True,
    ) -> list[str]:
        messages = new_task.publish(bodies, amqp_url=amqp_url, queue=queue, declare=declare)
        return [m.message_id for m in messages]

    def worker_command(self, spec: WorkerSpec) -> Command:
        argv = [
            sys.executable, "-m", "dramatiq_impl.worker",
            "--prefetch", str(spec.prefetch),
            "--slowdown", str(spec.slowdown),
            "--name", spec.name,
        ]  # fmt: skip
        return Command(argv, spec.environment())

    def receive_command(self) -> Command:
        return Command([sys.executable, "-m", "dramatiq_impl.receive"])


IMPLEMENTATION = DramatiqImplementation()
