"""The one provider policy: which RabbitMQ node a test run, the lab or ``mqlab broker`` uses.

``MQLAB_BROKER`` (or the ``kind`` argument) chooses:

* ``local`` — a private node from the installed binary (:mod:`testbed.local_node`);
* ``docker`` — a container, when an engine answers (:mod:`testbed.docker_node`);
* ``cluster`` — three private nodes clustered on loopback (:mod:`testbed.cluster`), for
  quorum queues and node-loss tests; its :attr:`~testbed.node.Node.failover_url` lists them all;
* ``netns`` — three private nodes, each in its own network namespace, whose links can be cut
  and healed (:mod:`testbed.netns_cluster`, for partition tests; root on Linux only);
* ``external`` — the broker at ``AMQP_URL`` (or the given URL); never killed or purged wholesale;
* ``auto`` (default) — external if an AMQP URL is given or ``AMQP_URL`` is set, else a private
  node (local binary, else Docker), else :class:`~shared.errors.BrokerUnavailable` saying how
  to get RabbitMQ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from shared.errors import BrokerUnavailable
from testbed.cluster import Cluster
from testbed.docker_node import DockerNode, docker_engine_available
from testbed.local_node import HOW_TO_GET_RABBITMQ, LocalNode, local_binary_available
from testbed.netns_cluster import NetnsCluster
from testbed.node import ExternalNode, Node

KINDS = ("auto", "local", "docker", "cluster", "netns", "external")


def make_node(
    kind: str | None = None, amqp_url: str | None = None, management_url: str | None = None
) -> Node:
    """Choose and construct (not start) a node; see the module docstring.

    Parameters:
        kind: one of :data:`KINDS`; default ``MQLAB_BROKER`` or ``auto``.
        amqp_url: an external broker's URI (makes ``auto`` choose ``external``).
        management_url: an external broker's management API.

    Raises:
        BrokerUnavailable: the provider cannot run here.
        ValueError: unknown ``kind``.
    """
    kind = (kind or os.environ.get("MQLAB_BROKER") or "auto").lower()
    if kind not in KINDS:
        raise ValueError(
            f"MQLAB_BROKER must be auto, local, docker, cluster, netns or external, not {kind!r}"
        )
    if kind == "auto":
        if amqp_url or os.environ.get("AMQP_URL"):
            kind = "external"
        elif local_binary_available():
            kind = "local"
        elif docker_engine_available():
            kind = "docker"
        else:
            raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)
    if kind == "external":
        return ExternalNode(amqp_url, management_url)
    if kind == "local":
        return LocalNode()
    if kind == "cluster":
        if not local_binary_available():
            raise BrokerUnavailable(f"the cluster provider runs local nodes: {HOW_TO_GET_RABBITMQ}")
        return Cluster()
    if kind == "netns":
        if not local_binary_available():
            raise BrokerUnavailable(f"the netns provider runs local nodes: {HOW_TO_GET_RABBITMQ}")
        return NetnsCluster()
    return DockerNode()


def private_kind() -> str:
    """``local`` or ``docker``: the provider of a private node on this machine.

    Raises:
        BrokerUnavailable: neither can run here.
    """
    if local_binary_available():
        return "local"
    if docker_engine_available():
        return "docker"
    raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)


@contextmanager
def provision(
    kind: str | None = None, amqp_url: str | None = None, management_url: str | None = None
) -> Iterator[Node]:
    """A started node for the duration of a ``with`` block, torn down after.

    Parameters and errors as :func:`make_node`; also ``TimeoutError`` / ``RuntimeError`` when
    the node does not become ready.
    """
    node = make_node(kind, amqp_url, management_url)
    try:
        node.start()
        yield node
    finally:
        node.close()
