"""A three-node cluster whose nodes run on their own test hosts, so the links between them can be
cut and healed while every node keeps running: network partitions, not just kills.

Use it like :class:`~testbed.cluster.Cluster` (``MQLAB_BROKER=netns``, or directly)::

    with NetnsCluster.started() as cluster:
        leader = cluster.leader_of("task_queue")
        cluster.cut(leader)                    # its cluster link down: a partition
        cluster.await_partitioned(leader)      # the majority sees it gone
        cluster.heal(leader)
        cluster.await_healed()                 # one cluster again, every queue with a leader

Each node is a :class:`~testbed.local_node.LocalNode` started inside a host of a
:class:`~testbed.netns.Network` (``ip netns exec``): its own epmd (started by the node, listening
in its namespace only), Erlang distribution on its cluster address, AMQP and the management API
on its client address, its own ``rabbitmq-env.conf`` (``RABBITMQ_CONF_ENV_FILE``: the system's
pins epmd and distribution to 127.0.0.1) and its own Erlang hosts file (``ERL_INETRC``) that
names every node's host: its own as 127.0.0.1 (so its CLI, run in its namespace, reaches it
whatever the state of its links), the others as their cluster addresses. The cluster forms as
:class:`Cluster` forms.

Two settings make partitions behave as tested:

* ``cluster_partition_handling = pause_minority`` (RabbitMQ docs, "Clustering and Network
  Partitions"): a node that sees less than half of the cluster pauses (stops its listeners,
  closes its clients' connections) until it sees a majority again, then resumes by itself.
  ``autoheal`` would let the minority keep serving and, on healing, restart the losing side
  (which can drop what it accepted meanwhile); ``ignore`` (RabbitMQ's default) would let both
  sides serve on and leave the cluster partitioned until an operator restarts nodes.
* ``net_ticktime`` (:data:`NET_TICKTIME`, Erlang ``kernel`` setting, default 60 s): a peer from
  which nothing arrives for between 0.75 and 1.25 of it is declared down (RabbitMQ docs,
  "Net Tick Time"). The CLI gets the same value (``RABBITMQ_CTL_ERL_ARGS``), else the node
  would drop a long CLI call as a silent peer.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import requests

from shared.errors import BrokerUnavailable
from testbed.cluster import SIZE, Cluster
from testbed.local_node import LocalNode
from testbed.netns import Host, NetnsUnavailable, Network
from testbed.process import wait_until

NET_TICKTIME = 4
"""Seconds of Erlang's ``net_ticktime`` on these nodes: a cut link is detected in 3-5 s
(RabbitMQ's default of 60 s would take 45-75 s)."""

PARTITION_CONFIG = "cluster_partition_handling = pause_minority\n"
"""``rabbitmq.conf`` line of every node (see the module docstring)."""


class NetnsNode(LocalNode):
    """A :class:`LocalNode` inside test host ``host`` of a :class:`Network`.

    Parameters:
        host: its host.
        hosts: every host of the cluster (for its Erlang hosts file).
        net_ticktime: Erlang's ``net_ticktime``, seconds.
        kwargs: as :class:`LocalNode` (``name``, ``cookie``, ``password``, ``extra_config``).
    """

    provider = "netns"

    def __init__(self, host: Host, hosts: list[Host], net_ticktime: int, **kwargs: Any) -> None:
        super().__init__(host=host.netns, listen_ip=host.client_ip, **kwargs)
        self.host = host
        self.prefix = host.exec_prefix
        self.net_ticktime = net_ticktime
        entries = [
            f"{{host, {{{'127,0,0,1' if h is host else h.cluster_ip.replace('.', ',')}}}, "
            f'["{h.netns}"]}}.'
            for h in hosts
        ]
        (self.dir / "inetrc").write_text("\n".join([*entries, "{lookup, [file, native]}.\n"]))

    def _env(self) -> dict[str, str]:
        ticktime = f"-kernel net_ticktime {self.net_ticktime}"
        return {
            **super()._env(),
            "ERL_INETRC": str(self.dir / "inetrc"),
            "ERL_EPMD_ADDRESS": f"127.0.0.1,{self.host.cluster_ip}",
            # Distribution listens on every address of the namespace (not 127.0.0.1 only).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ticktime,
            "RABBITMQ_CTL_ERL_ARGS": ticktime,
        }


class NetnsCluster(Cluster):
    """Three nodes, each on its own test host; see the module docstring.

    Parameters:
        size: nodes.
        net_ticktime: Erlang's ``net_ticktime`` of every node and CLI call, seconds.

    Raises:
        BrokerUnavailable: no ``rabbitmq-server`` binary, or no network namespaces here (the
            message says why: not root, no ``ip``).
        RuntimeError: creating the network failed.
    """

    provider = "netns"

    def __init__(self, size: int = SIZE, net_ticktime: int = NET_TICKTIME) -> None:
        try:
            self.network = Network(size)
        except NetnsUnavailable as e:
            raise BrokerUnavailable(f"the netns cluster cannot run here: {e}") from None
        self.net_ticktime = net_ticktime
        try:
            super().__init__(size)
        except BaseException:
            self.network.close()
            raise

    def _host(self, index: int) -> str:
        return self.network.hosts[index - 1].netns

    def _new_node(
        self, index: int, *, name: str, cookie: str, password: str, extra_config: str
    ) -> LocalNode:
        return NetnsNode(
            self.network.hosts[index - 1],
            self.network.hosts,
            self.net_ticktime,
            name=name,
            cookie=cookie,
            password=password,
            extra_config=PARTITION_CONFIG + extra_config,
        )

    def host_of(self, node: LocalNode) -> Host:
        """The test host ``node`` runs on."""
        assert isinstance(node, NetnsNode)
        return node.host

    def cut(self, node: LocalNode) -> float:
        """Partition ``node`` from the other nodes (its clients still reach it); the time it
        happened (epoch seconds)."""
        self.network.cut(self.host_of(node))
        self._management = None  # a fresh client starts with node 1 again
        return time.time()

    def heal(self, node: LocalNode) -> None:
        """Join ``node``'s link to the others again (see :meth:`await_healed`)."""
        self.network.heal(self.host_of(node))

    def nodes_seen_by(self, observer: LocalNode) -> dict[str, dict[str, Any]]:
        """``GET /api/nodes`` of ``observer``'s management API, by node name ({} if it does
        not answer: a paused node stops its listeners)."""
        try:
            response = requests.get(
                f"{observer.management_url}/api/nodes",
                auth=(observer.user, observer.password),
                timeout=5,
            )
        except requests.RequestException:
            return {}
        if not response.ok:
            return {}
        return {str(n["name"]): n for n in response.json()}

    def await_partitioned(self, node: LocalNode, timeout: float = 60.0) -> float:
        """Wait until every other node reports ``node`` not running (``GET /api/nodes``): the
        partition is detected; the epoch time it was seen (minus :meth:`cut`'s: detection time).

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        others = [n for n in self.nodes if n is not node]

        def seen() -> bool:
            for observer in others:
                view = self.nodes_seen_by(observer).get(node.node)
                if view is None or view.get("running"):
                    return False
            return True

        wait_until(seen, timeout, interval=0.2, what=f"the others to see {node.node} gone")
        return time.time()

    def await_paused(self, node: LocalNode, timeout: float = 120.0) -> float:
        """Wait until ``node`` refuses AMQP connections (``pause_minority`` stopped its
        listeners and closed its clients' connections); the epoch time it was seen.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        address = (node.host.client_ip if isinstance(node, NetnsNode) else "", node.amqp_port)

        def refused() -> bool:
            try:
                with socket.create_connection(address, timeout=2):
                    return False
            except ConnectionRefusedError:
                return True
            except OSError:
                return False

        wait_until(refused, timeout, interval=0.2, what=f"{node.node} to pause")
        return time.time()

    def await_healed(self, timeout: float = 120.0) -> None:
        """Wait until every node answers, sees every node running and no partition, and every
        quorum queue has a leader with all its members online.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        names = {n.node for n in self.nodes}

        def whole() -> bool:
            for observer in self.nodes:
                view = self.nodes_seen_by(observer)
                if set(view) != names:
                    return False
                if not all(v.get("running") and not v.get("partitions") for v in view.values()):
                    return False
            return True

        wait_until(whole, timeout, interval=0.5, what="the cluster to heal")
        self._management = None
        self.await_quorum_queues(timeout)

    def close(self) -> None:
        """Kill every node, delete every data directory, namespace and bridge."""
        try:
            super().close()
        finally:
            self.network.close()
