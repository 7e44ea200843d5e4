"""The Dramatiq implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

from dramatiq_impl import broker
from dramatiq_impl.producer import Producer
from shared.impl import Implementation


class DramatiqImplementation(Implementation):
    """Dramatiq's ``RabbitmqBroker`` and native worker (``dramatiq dramatiq_impl.actors``)."""

    name = "dramatiq"
    package = "dramatiq_impl"
    early_ack_flag = None  # Dramatiq always acks after the actor returns
    unlimited_prefetch = broker.UNLIMITED_PREFETCH  # dramatiq_queue_prefetch=0 is ignored
    producer_class = Producer

    def task_queue(self) -> str:
        return broker.task_queue()

    def hello_queue(self) -> str:
        return broker.hello_queue()

    def dead_letter_queue(self) -> str:
        return broker.with_siblings(self.task_queue())[2]  # Dramatiq's own .XQ

    def queues(self) -> list[str]:
        return [
            *broker.with_siblings(self.hello_queue()),
            *broker.with_siblings(self.task_queue()),
        ]


IMPLEMENTATION = DramatiqImplementation()
