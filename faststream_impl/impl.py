"""The FastStream implementation behind the common interface
(:class:`shared.impl.Implementation`)."""

from __future__ import annotations

from faststream_impl import broker
from faststream_impl.producer import Producer
from shared.impl import Implementation


class FastStreamImplementation(Implementation):
    """FastStream's ``RabbitBroker`` (asyncio, over aio-pika) and its app
    (``python -m faststream_impl.worker`` or ``faststream run faststream_impl.app:app``)."""

    name = "faststream"
    package = "faststream_impl"
    early_ack_flag = "--ack-first"  # FastStream's AckPolicy.ACK_FIRST
    unlimited_prefetch = 0  # Channel(prefetch_count=None): no basic.qos at all
    producer_class = Producer

    def task_queue(self) -> str:
        return broker.task_queue()

    def hello_queue(self) -> str:
        return broker.hello_queue()


IMPLEMENTATION = FastStreamImplementation()
