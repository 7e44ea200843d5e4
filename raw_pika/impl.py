"""The pika implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

from collections.abc import Sequence

from raw_pika import new_task
from raw_pika import settings as pika_settings
from shared.impl import Implementation


class PikaImplementation(Implementation):
    """Hand-written pika, as in the RabbitMQ tutorials."""

    name = "pika"
    package = "raw_pika"
    early_ack_flag = "--auto-ack"  # --auto-ack, tutorial 1's consumer mode
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


IMPLEMENTATION = PikaImplementation()
