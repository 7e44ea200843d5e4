"""A private three-node RabbitMQ cluster on loopback, for quorum queues and node-loss tests.

Use it like a single node (``MQLAB_BROKER=cluster`` through :func:`testbed.provider.provision`,
or directly)::

    with Cluster.started() as cluster:
        print(cluster.failover_url)            # "amqp://...:p1/%2F;amqp://...:p2/%2F;..."
        leader = cluster.leader_of("task_queue")
        cluster.kill_node(leader)               # SIGKILL one node
        cluster.start_node(leader)              # it rejoins (its data dir is kept)
        cluster.kill()                          # every node
        cluster.start()                         # all three again, together

Each node is a :class:`~testbed.local_node.LocalNode` (own name, ports, data directory) with
one shared Erlang cookie. The cluster forms by classic config peer discovery (RabbitMQ docs,
"Cluster Formation and Peer Discovery: Config File Peer Discovery Backend"): node 1, the seed,
boots first on its own; nodes 2 and 3, whose ``rabbitmq.conf`` names node 1 as their peer,
then boot together, find it running and join it as they boot (no ``stop_app``/
``join_cluster``/``start_app`` round trip), then the management API lists 3 nodes running.
Every process and directory is registered with :mod:`testbed.reaper`, so a Ctrl+C or SIGKILL
of the owner leaves nothing.

A restarted former member waits for its peers before it boots: it retries loading its tables
from them ``mnesia_table_loading_retry_limit`` times, ``mnesia_table_loading_retry_timeout``
each (RabbitMQ docs, "Clustering Guide: Restarting Cluster Nodes"; defaults 10 x 30 s). So
:meth:`Cluster.start` launches every stopped node before waiting for any, and the limits are
set so a node whose peers never come back fails in about a minute, not five.
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Self

import requests

from testbed.local_node import LocalNode
from testbed.management import Management
from testbed.node import Node, mask_password
from testbed.process import wait_until

SIZE = 3
"""Nodes in the cluster: the smallest that survives the loss of one (a quorum of 2)."""

PEER_WAIT_CONFIG = (
    "mnesia_table_loading_retry_timeout = 6000\nmnesia_table_loading_retry_limit = 10\n"
)
"""``rabbitmq.conf`` lines: a restarted former member waits up to 10 x 6 s for its peers."""

BOOT_TIMEOUT = 120.0
"""Seconds a node (or the whole cluster) may take to boot on this slow, shared machine."""


RESTART_RACES = ("incompatible_feature_flags", "timeout_waiting_for_tables", "force_boot")
"""Boot failures of a member restarted together with the others (RabbitMQ 3.10.8) that a second
boot gets past, seen in the suite on a loaded machine: the feature-flag sync with a peer still
booting (``{badmap,undefined}`` in ``rabbit_feature_flags:enable_dependencies``) and Mnesia
giving up on a peer's tables ("start the other nodes first ... force_boot")."""


class Cluster(Node):
    """Three private RabbitMQ nodes clustered on loopback; see the module docstring.

    Attributes:
        nodes: the three :class:`LocalNode` objects, node 1 (the seed) first.
        amqp_url: node 1's AMQP URI (one URL, for code that takes exactly one).
        amqp_urls: every node's AMQP URI.
        management_url: node 1's management API; :attr:`management` falls back to the others.

    Raises:
        BrokerUnavailable: no ``rabbitmq-server`` binary is installed.
    """

    provider = "cluster"
    can_kill = True

    def __init__(self, size: int = SIZE) -> None:
        cookie = secrets.token_hex(16).upper()
        # One administrator password for all nodes: each node's rabbitmq.conf creates user
        # mqlab with it on first boot, and a node that joins takes the cluster's users, so
        # every node's URI holds the same account.
        password = secrets.token_urlsafe(18)
        base = f"mqlab-{uuid.uuid4().hex[:6]}"
        # The seed boots on its own; every other node names it as its peer.
        join_seed = (
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"cluster_formation.classic_config.nodes.1 = {base}-1@{self._host(1)}\n"
        )
        self.nodes = [
            self._new_node(
                i,
                name=f"{base}-{i}",
                cookie=cookie,
                password=password,
                extra_config=PEER_WAIT_CONFIG + ("" if i == 1 else join_seed),
            )
            for i in range(1, size + 1)
        ]
        self.amqp_url = self.nodes[0].amqp_url
        self.management_url = self.nodes[0].management_url
        self._formed = False

    def _host(self, index: int) -> str:
        """The host part of node ``index``'s name (1-based)."""
        return "localhost"

    def _new_node(
        self, index: int, *, name: str, cookie: str, password: str, extra_config: str
    ) -> LocalNode:
        """Construct (not start) node ``index`` (1-based) of the cluster."""
        return LocalNode(name=name, cookie=cookie, password=password, extra_config=extra_config)

    @classmethod
    @contextmanager
    def started(cls, size: int = SIZE) -> Iterator[Self]:
        """A formed cluster for the duration of a ``with`` block, removed after.

        Raises:
            BrokerUnavailable: no ``rabbitmq-server`` binary.
            RuntimeError, TimeoutError: a node did not boot or join.
        """
        cluster = cls(size)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()

    @property
    def management(self) -> Management:
        """A management API client that asks the next live node when one is down."""
        if self._management is None:
            self._management = Management(
                self.management_url,
                self.amqp_url,
                fallbacks=[n.management_url for n in self.nodes[1:]],
            )
        return self._management

    @property
    def amqp_urls(self) -> list[str]:
        """Every node's AMQP URI, node 1 first."""
        return [n.amqp_url for n in self.nodes]

    @property
    def failover_url(self) -> str:
        """Every node's AMQP URI joined by ``;``: the ``AMQP_URL`` of a client that fails over
        (:func:`shared.settings.amqp_urls`)."""
        return ";".join(self.amqp_urls)

    def start(self) -> None:
        """Form the cluster (first call), or start every stopped node again and wait until all
        are members and running (:meth:`await_online`); a member that lost a known race of
        nodes booting together (:data:`RESTART_RACES`) is booted once more.

        Raises:
            RuntimeError: a node exited during boot (the message quotes its log).
            TimeoutError: not formed within :data:`BOOT_TIMEOUT` seconds, or the nodes did not
                all join (a node booted alone).
        """
        if not self._formed:
            # The seed first: a blank node that finds no peer running boots on its own; the
            # others then find it and join it as they boot.
            seed = self.nodes[0]
            seed.launch()
            seed.wait_ready(BOOT_TIMEOUT)
            self._formed = True
        stopped = [n for n in self.nodes if not n.alive()]
        for node in stopped:
            node.launch()  # all at once: restarted members wait for each other
        failed = self._wait_all(stopped)
        again = [n for n, e in failed if any(r in str(e) for r in RESTART_RACES)]
        if failed and len(again) == len(failed):
            for node in again:  # a known race of members booting together: boot it once more
                print(f"\n{node.node} lost a restart race; booting it again")
                node.kill()  # what is left of the failed boot (its launcher may not have exited)
                node.launch()
            failed = self._wait_all(again)
        if failed:
            raise failed[0][1]
        self.await_online()
        self.await_quorum_queues()

    def _wait_all(self, nodes: list[LocalNode]) -> list[tuple[LocalNode, BaseException]]:
        """Wait for ``nodes`` to boot, in parallel; the nodes that failed, with their error."""
        return _on_each(nodes, lambda node: node.wait_ready(BOOT_TIMEOUT))

    def await_online(self, count: int | None = None) -> None:
        """Wait until a live node's management API lists ``count`` cluster members running
        (``GET /api/nodes``, field ``running``: the node's own view of the cluster, what
        ``rabbitmqctl await_online_nodes`` waits for, without booting a CLI VM), then until
        every live node serves (:meth:`Node.wait_ready`).

        Parameters:
            count: nodes to wait for; default every node whose process runs.

        Raises:
            RuntimeError: no node of the cluster is running.
            TimeoutError: not within :data:`BOOT_TIMEOUT` seconds (the message shows the last
                view).
        """
        live = [n for n in self.nodes if n.alive()]
        if not live:
            raise RuntimeError("no node of the cluster is running")
        count = len(live) if count is None else count
        seen: list[str] = []

        def online() -> bool:
            try:
                nodes = live[0].management.api("nodes")
            except requests.RequestException:
                return False
            seen[:] = sorted(str(n.get("name")) for n in nodes if n.get("running"))
            return len(seen) >= count

        try:
            wait_until(online, BOOT_TIMEOUT, interval=0.2, what=f"{count} online nodes")
        except TimeoutError as e:
            raise TimeoutError(f"{e}: running {seen}") from None
        for node in live:
            Node.wait_ready(node, BOOT_TIMEOUT)

    def await_quorum_queues(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until every quorum queue has a leader on a running node and every running
        member node is back in its ``online`` list (management API ``leader``, ``members``,
        ``online``): until then a restarted queue may not confirm publishes yet.

        Raises:
            TimeoutError: not within ``timeout`` seconds (the message names a queue).
        """
        live = {n.node for n in self.nodes if n.alive()}
        pending: list[str] = []

        def settled() -> bool:
            pending.clear()
            try:
                queues = self.management.queues()
            except requests.RequestException:  # no node answers yet: not settled
                pending.append("(management API)")
                return False
            for q in queues:
                if q.get("type") != "quorum":
                    continue
                online = set(q.get("online") or [])
                members = set(q.get("members") or [])
                if q.get("leader") not in live or not (members & live) <= online:
                    pending.append(f"{q.get('name')} (leader {q.get('leader')}, online {online})")
            return not pending

        try:
            wait_until(settled, timeout, interval=0.2, what="every quorum queue to have a leader")
        except TimeoutError as e:
            raise TimeoutError(f"{e}: not yet {pending[:3]}") from None

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every live node accepts AMQP connections and the management API answers.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        for node in self.nodes:
            if node.alive():
                Node.wait_ready(node, timeout)

    def node(self, name: str) -> LocalNode:
        """The node called ``name`` (``mqlab-xxxxxx-2@localhost``).

        Raises:
            KeyError: no such node in this cluster.
        """
        for node in self.nodes:
            if node.node == name:
                return node
        raise KeyError(name)

    def leader_of(self, queue: str, timeout: float = 30.0) -> LocalNode:
        """The node that leads quorum queue ``queue`` now (management API ``leader`` field).

        Raises:
            TimeoutError: the queue has no leader on a live node within ``timeout`` seconds
                (it does not exist, or has no quorum).
        """
        found: list[LocalNode] = []

        def has_leader() -> bool:
            stats = self.management.queue(queue)
            if stats is None or not stats.node:
                return False
            try:
                node = self.node(stats.node)
            except KeyError:
                return False
            if not node.alive():
                return False
            found.append(node)
            return True

        wait_until(has_leader, timeout, interval=0.1, what=f"a leader of {queue}")
        return found[-1]

    def kill_node(self, node: LocalNode) -> None:
        """SIGKILL one node (no clean shutdown, as in a crash); its data is kept."""
        node.kill()
        self._management = None  # a fresh client starts with a live node

    def start_node(self, node: LocalNode, timeout: float = BOOT_TIMEOUT) -> float:
        """Start a killed node again and wait until it has rejoined; seconds it took.

        Raises:
            RuntimeError: it exited during boot.
            TimeoutError: it did not rejoin within ``timeout`` seconds.
        """
        began = time.monotonic()
        node.launch()
        node.wait_ready(timeout)
        self.await_online()
        self.await_quorum_queues(timeout)
        return time.monotonic() - began

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl ARGS`` on every running node (a per-node setting such as
        ``set_vm_memory_high_watermark`` then holds cluster-wide); node 1's output.

        Raises:
            RuntimeError: it failed on a node (the message quotes its stderr).
        """
        live = [n for n in self.nodes if n.alive()]
        outputs: dict[str, str] = {}  # in parallel: each call boots a CLI VM (seconds)
        failed = _on_each(
            live, lambda n: outputs.__setitem__(n.node, n.rabbitmqctl(*args, timeout=timeout))
        )
        if failed:
            raise failed[0][1]
        return outputs[live[0].node] if live else ""

    def sync_metadata(self) -> None:
        """:meth:`LocalNode.sync_metadata` on every running node with one ``rabbitmqctl
        eval`` (``rpc:multicall``); a node it cannot reach gets its own call. One CLI, not
        three: each boots an Erlang VM (20 s of wall time at load average 20).

        Raises:
            RuntimeError: rabbitmqctl failed on a running node.
        """
        running = [node for node in self.nodes if node.alive()]
        multicall = "rpc:multicall([" + ", ".join(f"'{n.node}'" for n in running) + "], "
        expr = f"{{_, B1}} = {multicall}mnesia, sync_log, []), {{_, B2}} = {multicall}dets, sync, [ra_directory_reverse]), B1 ++ B2."  # noqa: E501
        unreached = running[0].rabbitmqctl("eval", expr) if running else ""
        for node in (n for n in running if n.node in unreached):
            node.sync_metadata()

    def kill(self) -> None:
        """SIGKILL every node (a whole-cluster crash)."""
        for node in self.nodes:
            node.kill()
        self._management = None

    def reset(self) -> None:
        """Form the cluster anew, empty: SIGKILL every node, delete every node's data (queues,
        messages, cluster membership), start and join them again (same names, ports, cookie and
        password). For a test bed whose cluster a test left unable to serve.

        Raises:
            RuntimeError, TimeoutError: as :meth:`start`.
        """
        self.kill()
        for node in self.nodes:
            shutil.rmtree(node.dir / "mnesia", ignore_errors=True)
        self._formed = False
        self.start()

    def close(self) -> None:
        """Kill every node and delete every data directory."""
        for node in self.nodes:
            node.close()

    def describe(self) -> str:
        """One line per node: its name, AMQP URI (password masked) and management UI."""
        lines = [f"RabbitMQ cluster of {len(self.nodes)} nodes ({self.provider}):"]
        lines += [
            f"  {n.node}  AMQP {mask_password(n.amqp_url)}  management UI {n.management_url}"
            for n in self.nodes
        ]
        return "\n".join(lines)


def _on_each(
    nodes: list[LocalNode], call: Callable[[LocalNode], object]
) -> list[tuple[LocalNode, BaseException]]:
    """``call(node)`` for every node, in parallel threads; the nodes whose call raised, with
    the exception."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = {node: pool.submit(call, node) for node in nodes}
    return [(node, e) for node, f in futures.items() if (e := f.exception()) is not None]
