"""The pika implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

from raw_pika import broker
from raw_pika.producer import Producer
from shared.impl import Implementation


class PikaImplementation(Implementation):
    """Hand-written pika, as in the RabbitMQ tutorials."""

    name = "pika"
    package = "raw_pika"
    early_ack_flag = "--auto-ack"  # tutorial 1's consumer mode (auto_ack=True)
    unlimited_prefetch = 0  # no basic.qos at all
    producer_class = Producer

    def task_queue(self) -> str:
        return broker.task_queue()

    def hello_queue(self) -> str:
        return broker.hello_queue()


IMPLEMENTATION = PikaImplementation()
