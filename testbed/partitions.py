"""The partition schemes: which node of a :class:`~testbed.netns_cluster.NetnsCluster` to cut
off, chosen from what the cluster reports, and a partition as a ``with`` block::

    node = target(cluster, "leader", "task_queue")
    with partitioned(cluster, node) as times:
        ...                                   # the majority serves; ``node`` pauses
    print(times.detected, times.healed)       # seconds

Schemes (:data:`SCHEMES`): the work queue's ``leader``; a ``follower`` (a member that does
not lead); the node a ``worker`` consumes through; the node a ``producer`` publishes through.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from testbed.local_node import LocalNode
from testbed.netns_cluster import NetnsCluster
from testbed.process import wait_until

SCHEMES = ("leader", "follower", "worker", "producer")
"""Which node to cut off (module docstring)."""


def _local_ports(pids: Iterable[int]) -> set[int]:
    ports = set()
    for pid in pids:
        try:
            ports |= {c.laddr.port for c in psutil.Process(pid).net_connections("tcp")}
        except psutil.Error:
            continue
    return ports


def target(
    cluster: NetnsCluster,
    scheme: str,
    queue: str,
    *,
    worker_pids: Iterable[int] = (),
    producer_pids: Iterable[int] = (),
) -> LocalNode:
    """The node ``scheme`` cuts off, for work queue ``queue``.

    Parameters:
        cluster: the cluster.
        scheme: one of :data:`SCHEMES`.
        queue: the quorum work queue.
        worker_pids: the worker's processes (``worker``): its consumer's node.
        producer_pids: the producer's processes (``producer``): the node of its AMQP
            connection (management API ``connections``, matched by the client's port).

    Raises:
        ValueError: unknown scheme.
        LookupError: no consumer of those processes, or no connection of theirs listed within
            10 s.
        TimeoutError: the queue has no leader (``leader``, ``follower``).
    """
    if scheme == "leader":
        return cluster.leader_of(queue)
    if scheme == "follower":
        leader = cluster.leader_of(queue)
        return next(n for n in cluster.nodes if n is not leader)
    if scheme == "worker":
        consumers = cluster.management.consumers_of(queue, worker_pids)
        if not consumers:
            raise LookupError(f"no consumer of {queue} from processes {list(worker_pids)}")
        return cluster.node(consumers[0].node)
    if scheme == "producer":
        found: list[LocalNode] = []

        def listed() -> bool:  # the API lists a connection once its stats are first emitted
            ports = _local_ports(producer_pids)
            for connection in cluster.management.connections():
                if connection.get("peer_port") in ports:
                    found.append(cluster.node(str(connection["node"])))
            return bool(found)

        try:
            wait_until(listed, 10, interval=0.25, what="the producer's connection")
        except TimeoutError:
            raise LookupError(f"no AMQP connection from processes {list(producer_pids)}") from None
        return found[0]
    raise ValueError(f"unknown partition scheme {scheme!r}; known: {', '.join(SCHEMES)}")


STUCK_AFTER = 30.0
"""Seconds after healing that a node may stay out of the cluster before it is restarted:
SIGKILLed and started again with its data, as an operator would (:func:`rejoin`). Seen on this
machine (RabbitMQ 3.10.8, ``pause_minority``, ``net_ticktime`` 4 s) twice in about 60 cuts on
2026-12-08, in a suite run and in the partition scenario, and in 2 of 2 rows of a full-size
classic partition scenario (30 s cut): the cut node, paused, began its restart after the heal
with mnesia reporting ``inconsistent_database, starting_partitioned_network`` for both peers,
and its boot then waited for Mnesia tables its peers did not serve ("Waiting for Mnesia tables
for 6000 ms, 9 retries left", ``mnesia_table_loading_retry_*``, then no more), answering
neither AMQP nor the management API. A fresh start of that node (a new VM) boots and rejoins
in seconds. rabbitmq-server issue #2175 describes ``pause_minority`` recoveries that do not
complete. The restart is printed and recorded (:attr:`Times.restarted`)."""


SECOND_OPINION_AFTER = 5.0
"""Seconds between the two looks at a node before it is restarted (:func:`rejoin`)."""


@dataclass
class Times:
    """Seconds from the cut: until the other nodes saw the node gone (``detected``), and from
    the heal until the cluster was whole again (``healed``); ``restarted`` if nodes had to be
    restarted to rejoin (:data:`STUCK_AFTER`)."""

    detected: float = 0.0
    healed: float = 0.0
    restarted: bool = False


@contextmanager
def partitioned(cluster: NetnsCluster, node: LocalNode) -> Iterator[Times]:
    """Cut ``node`` off, wait until the others see it gone, run the block, heal, and wait
    until the cluster is whole (every node running, every quorum queue led).

    Raises:
        TimeoutError: the partition was not detected, or the cluster did not heal, in time.
    """
    times = Times()
    cut_at = cluster.cut(node)
    try:
        times.detected = cluster.await_partitioned(node) - cut_at
        yield times
    finally:
        cluster.heal(node)
    healing = time.time()
    times.restarted = rejoin(cluster, node)
    times.healed = time.time() - healing


def rejoin(cluster: NetnsCluster, node: LocalNode) -> bool:
    """Wait until the cluster is whole after ``node``'s link was healed; if after
    :data:`STUCK_AFTER` seconds it is not, and some nodes do not answer as running (their own
    management API, asked twice :data:`SECOND_OPINION_AFTER` seconds apart: paused, or stuck
    restarting), SIGKILL those, start them again with their data and wait again. Whether any
    was restarted.

    Raises:
        TimeoutError: not whole, with every node answering (a queue without a leader, say), or
            not whole after the restart.
    """
    try:
        cluster.await_healed(STUCK_AFTER)
        return False
    except TimeoutError:
        stuck = _not_running(cluster)
        if not stuck:
            raise
    time.sleep(SECOND_OPINION_AFTER)  # a slow node answers the second time
    stuck = [n for n in _not_running(cluster) if n in stuck]
    if not stuck:
        cluster.await_healed()
        return False
    names = ", ".join(n.node for n in stuck)
    print(f"\n{names} not back within {STUCK_AFTER:g} s of healing {node.node}; restarting")
    for stuck_node in stuck:
        cluster.kill_node(stuck_node)
    cluster.start()
    cluster.await_healed()
    return True


def _not_running(cluster: NetnsCluster) -> list[LocalNode]:
    """The nodes whose own management API does not answer that they run."""
    return [n for n in cluster.nodes if not cluster.nodes_seen_by(n).get(n.node, {}).get("running")]
