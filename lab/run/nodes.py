"""The broker a comparison runs on: a private node, or one given by ``--amqp-url``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from shared.errors import BrokerUnavailable
from testbed.node import ExternalNode, Node, mask_password
from testbed.provider import private_kind, provision

EXTERNAL_PREFIX = "mqlab_lab_"
"""Queue prefix the lab uses on a broker it does not own, so it never touches other queues."""


def external_node(amqp_url: str, management_url: str | None) -> ExternalNode:
    """The broker at ``amqp_url``, its management API at ``management_url`` (else
    ``MQLAB_MANAGEMENT_URL``, else port 15672 of the AMQP host), checked to answer.

    Raises:
        BrokerUnavailable: the AMQP port or the management API does not answer within 10 s
            (the message names the address and how to point mqlab elsewhere).
    """
    broker = ExternalNode(amqp_url, management_url)
    try:
        broker.start()
    except TimeoutError as e:
        if "management API" in str(e):
            raise BrokerUnavailable(
                f"the management API at {broker.management_url} does not answer (needed for "
                "queue figures): pass --management-url URL or set MQLAB_MANAGEMENT_URL"
            ) from None
        raise BrokerUnavailable(
            f"the broker at {mask_password(amqp_url)} does not answer ({e})"
        ) from None
    return broker


@contextlib.contextmanager
def lab_node(amqp_url: str | None, management_url: str | None = None) -> Iterator[Node]:
    """A private node for the run (local binary, else Docker), or the broker at ``amqp_url``.

    Raises:
        BrokerUnavailable: no way to run RabbitMQ here, or the broker at ``amqp_url`` (or its
            management API) does not answer.
    """
    if amqp_url:
        os.environ.setdefault("MQLAB_QUEUE_PREFIX", EXTERNAL_PREFIX)
        yield external_node(amqp_url, management_url)
        return
    with provision(private_kind()) as node:
        yield node
