"""The Celery implementation behind the common interface (:class:`shared.impl.Implementation`)."""

from __future__ import annotations

from celery_impl import broker
from celery_impl.producer import Producer
from shared.impl import Implementation


class CeleryImplementation(Implementation):
    """Celery over RabbitMQ (py-amqp transport), one prefork process per worker."""

    name = "celery"
    package = "celery_impl"
    early_ack_flag = "--early-ack"  # task_acks_late off: Celery's default, the negative control
    unlimited_prefetch = 0  # worker_prefetch_multiplier=0: no basic.qos limit
    producer_class = Producer

    def task_queue(self) -> str:
        return broker.task_queue()

    def hello_queue(self) -> str:
        return broker.hello_queue()


IMPLEMENTATION = CeleryImplementation()
