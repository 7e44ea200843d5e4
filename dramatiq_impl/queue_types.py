"""Quorum queues for Dramatiq: the smallest change that makes ``RabbitmqBroker`` declare them.

Dramatiq 2.2 has no queue-type option (its quorum pull requests were closed). Its
``RabbitmqBroker`` builds every queue's x-arguments in one method, ``_build_queue_arguments``
(the work queue and its ``.DQ`` delay queue: dead-lettering to ``.XQ``), and declares the ``.XQ``
dead-letter queue in ``_declare_xq_queue`` (``x-message-ttl``: dead letters expire after 7 days).
:class:`TypedQueuesBroker` overrides those two private methods to add ``x-queue-type`` from
``MQLAB_QUEUE_TYPE`` and, on quorum queues, ``x-delivery-limit`` (``MQLAB_DELIVERY_LIMIT``), so the
work queue, ``.DQ`` and ``.XQ`` are all quorum queues, replicated like the messages they hold. The
rest of Dramatiq is untouched: its consumer already sets a per-consumer ``basic_qos`` (quorum
queues refuse a global one), messages are persistent, and a message that exceeds the delivery
limit is dead-lettered to ``.XQ`` like one that ran out of retries. Message TTL (``.XQ``) is
supported by quorum queues from RabbitMQ 3.10. Private methods can change in a Dramatiq release:
the test suite declares all three queues on both types and would fail first.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name

from shared import queues, settings


def _delete_channel(broker: RabbitmqBroker) -> None:
    """Dramatiq's ``channel`` deleter, except that the channel may be missing from
    ``broker.channels``: Dramatiq's getter stores a new channel for the thread *before*
    ``confirm_delivery()`` and adds it to that set only after, so when the node dies during
    ``confirm_delivery`` its deleter's ``channels.remove`` raised ``KeyError`` out of
    ``declare_queue`` (seen when a cluster node was SIGKILLed under a reconnecting producer)."""
    channel = getattr(broker.state, "channel", None)
    if channel is None:
        return
    del broker.state.channel
    broker.channels.discard(channel)
    if channel.is_open:
        with contextlib.suppress(Exception):
            channel.close()


class TypedQueuesBroker(RabbitmqBroker):
    """``RabbitmqBroker`` whose queues are of type ``MQLAB_QUEUE_TYPE`` (classic or quorum), and
    whose ``channel`` deleter tolerates a channel that died while being set up."""

    channel = cast(property, vars(RabbitmqBroker)["channel"]).deleter(_delete_channel)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        s = settings.load()
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
        arguments.update(queues.arguments(s.queue_type, delivery_limit=s.delivery_limit))
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {"x-message-ttl": DEAD_MESSAGE_TTL}
        arguments.update(queues.arguments(settings.load().queue_type))
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True, arguments=arguments
        )
