"""Fixtures: the only seam between the conformance suite and the broker.

Every conformance test runs for each implementation on two **topologies**, named in its id
(``test_delivery[pika-classic]``, ``test_delivery[pika-quorum]``):

* ``classic`` — one private node, classic durable queues (the seed tutorials);
* ``quorum`` — a private 3-node cluster (:mod:`testbed.cluster`), quorum queues, and clients
  given every node's URL (``AMQP_URL="url1;url2;url3"``), so they fail over.

One node and one cluster per test process, each started lazily by the first test that needs it
and shared by the tests after it in that process, which run one after another (some kill its
nodes). ``make test`` runs three pytest-xdist processes (``-n 3 --dist load``), so a run has
three single nodes and three clusters, each owned by one process. ``make test ARGS="-k
classic"`` runs the classic suite alone.

* ``broker`` — the Node of the test's topology; it sets ``AMQP_URL`` (every node's URL) and
  ``MQLAB_QUEUE_TYPE`` for the test and the programs it starts.
* ``impl`` — every available implementation on both topologies.
* ``cluster`` — the 3-node :class:`~testbed.cluster.Cluster` itself, whole (for node-loss tests).
* ``start_worker`` — starts worker processes in their own process groups, killed at teardown.
* autouse: every implementation's queues are deleted before each test, so each starts empty.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
import requests

from shared.impl import Implementation, WorkerSpec
from testbed import registry
from testbed.cluster import Cluster
from testbed.local_node import LocalNode
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision

DOT_SECONDS = 0.1
"""Seconds of work per ``.`` in the tests (the tutorial's 1 s would make the suite crawl)."""

WORKER_READY_TIMEOUT = 30.0
"""Seconds a worker may take from start to a registered consumer."""

IMPLEMENTATIONS = registry.available()

TOPOLOGIES = ("classic", "quorum")
"""``classic``: one node, classic queues; ``quorum``: the 3-node cluster, quorum queues."""


def _external() -> bool:
    """Whether the run uses somebody else's broker (``AMQP_URL`` set, provider auto/external)."""
    return bool(os.environ.get("AMQP_URL")) and os.environ.get("MQLAB_BROKER") in (
        None,
        "",
        "auto",
        "external",
    )


def impl_params(
    *topologies: str, where: Callable[[Implementation], bool] = lambda _impl: True
) -> list[pytest.param]:  # type: ignore[valid-type]
    """``impl`` parameters: each implementation (for which ``where`` holds) on each of
    ``topologies``, ids ``pika-quorum``."""
    return [
        pytest.param((name, topology), id=f"{name}-{topology}")
        for name, implementation in IMPLEMENTATIONS.items()
        if where(implementation)
        for topology in topologies
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test that ran on private nodes, add each node's last warnings and errors
    from its server log to the report (the nodes and their logs are gone after the session)."""
    report = yield
    if report.failed and call.when != "teardown":
        node = getattr(item, "funcargs", {}).get("broker")
        for local in getattr(node, "nodes", [node]):
            log = getattr(local, "broker_log", None)
            if log is None or not Path(log).exists():
                continue
            lines = Path(log).read_text(errors="replace").splitlines()
            notable = [ln for ln in lines if "[error]" in ln or "[warning]" in ln][-40:]
            report.sections.append((f"RabbitMQ log {local.node}", "\n".join(notable)))
    return report


def _topology_of(item: pytest.Item | pytest.FixtureRequest) -> str:
    node = item.node if isinstance(item, pytest.FixtureRequest) else item
    callspec = getattr(node, "callspec", None)
    param = callspec.params.get("impl") if callspec is not None else None
    return str(param[1]) if isinstance(param, tuple) else "classic"


def _restoring_env(values: dict[str, str]) -> Callable[[], None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    return restore


@pytest.fixture(scope="session")
def single_node() -> Iterator[Node]:
    """One node for the session: private (killable) unless ``AMQP_URL`` names a broker."""
    prefix = {"MQLAB_QUEUE_PREFIX": f"mqlabtest-{uuid.uuid4().hex[:8]}."} if _external() else {}
    with provision() as b:
        print(f"\n{b.describe()}")
        restore = _restoring_env(prefix)  # somebody else's broker: keep to our own queue names
        try:
            yield b
        finally:
            restore()


@pytest.fixture(scope="session")
def _cluster_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """The 3-node cluster for the session (the broker of the ``quorum`` topology); on somebody
    else's broker, that broker (quorum queues, no node loss)."""
    if _external():
        yield request.getfixturevalue("single_node")
        return
    with provision("cluster") as c:
        print(f"\n{c.describe()}")
        yield c


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``classic`` or ``quorum``: the topology of this test (from its ``impl`` parameter)."""
    return _topology_of(request)


@pytest.fixture
def broker(request: pytest.FixtureRequest, topology: str) -> Iterator[Node]:
    """The node (or cluster) of this test's topology, whole, with ``AMQP_URL`` (every node) and
    ``MQLAB_QUEUE_TYPE`` set for the test."""
    node: Node = request.getfixturevalue("_cluster_node" if topology == "quorum" else "single_node")
    if isinstance(node, Cluster):
        _heal(node)
    restart_nodes_without_statistics(node)
    restore = _restoring_env({"AMQP_URL": node.failover_url, "MQLAB_QUEUE_TYPE": topology})
    try:
        yield node
    finally:
        restore()


def _heal(cluster: Cluster) -> None:
    """Give the next test a cluster that serves: start nodes a test before left down, and if
    its quorum queues still have no leader (seen after a whole-cluster restart on a loaded
    machine) form it anew, empty, rather than fail every test after it."""
    try:
        if not all(n.alive() for n in cluster.nodes):
            cluster.start()
        cluster.await_quorum_queues(timeout=60)
    except (TimeoutError, RuntimeError) as e:
        print(f"\ncluster did not settle ({e}); forming it anew")
        cluster.reset()


def restart_nodes_without_statistics(node: Node) -> list[str]:
    """Restart (SIGKILL, start; data kept) each private node whose management agent is down
    (:meth:`~testbed.management.Management.agent_failed`): the tests read consumers and queue
    figures from it. Returns the names of the nodes restarted."""
    members = node.nodes if isinstance(node, Cluster) else [node]
    restarted = []
    for member in members:
        if not isinstance(member, LocalNode) or not member.alive():
            continue
        if member.management.agent_failed():
            print(f"\nthe management agent of {member.node} is down; restarting the node")
            if isinstance(node, Cluster):
                node.kill_node(member)
                node.start_node(member)
            else:
                member.kill()
                member.start()
            restarted.append(member.node)
    return restarted


@pytest.fixture
def cluster(broker: Node) -> Cluster:
    """The private 3-node cluster (for tests that kill its nodes); skipped on an external
    broker."""
    if not isinstance(broker, Cluster):
        pytest.skip(
            "needs the private 3-node cluster; an external broker cannot be (unset AMQP_URL)"
        )
    return broker


@pytest.fixture(params=impl_params(*TOPOLOGIES))
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each available implementation on each topology (the topology goes to ``broker``)."""
    name, _topology = request.param
    return IMPLEMENTATIONS[name]


@pytest.fixture
def queue_type() -> str:
    """The queue type a test declares its queues with (``MQLAB_QUEUE_TYPE``): ``classic``
    unless the test parametrises ``queue_type`` itself (a topology fixture may provide it)."""
    return os.environ.get("MQLAB_QUEUE_TYPE") or "classic"


@pytest.fixture
def killable_broker(broker: Node) -> Node:
    """The test's broker, if this provider can SIGKILL and restart it; otherwise skip."""
    if not broker.can_kill:
        pytest.skip(
            f"needs a broker mqlab can kill and restart; the {broker.provider} provider cannot "
            "(unset AMQP_URL, or MQLAB_BROKER=local or docker)"
        )
    return broker


@pytest.fixture(autouse=True)
def _empty_queues(request: pytest.FixtureRequest) -> None:
    """Delete every implementation's queues before each test that uses the broker."""
    if "broker" not in request.fixturenames:
        return
    b: Node = request.getfixturevalue("broker")
    names = [q for implementation in IMPLEMENTATIONS.values() for q in implementation.queues()]
    try:
        for queue in names:
            b.management.delete_queue(queue)
    except requests.RequestException:
        if not isinstance(b, Cluster):
            raise
        b.reset()  # a queue without a leader cannot be deleted: start from an empty cluster


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    """Path of a fresh execution journal for this test."""
    return str(tmp_path / "journal.db")


StartWorker = Callable[..., GroupProcess]


@pytest.fixture
def start_worker(broker: Node, journal_path: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Factory: ``start_worker(impl, name="w1", prefetch=1, concurrency=1, slowdown=1.0,
    early_ack=False, env=None, wait=True, amqp_url=None)`` starts a worker process and (with
    ``wait``) returns once its consumer is registered on the work queue. Every worker is
    SIGKILLed (whole group) at teardown.
    """
    started: list[GroupProcess] = []

    def start(
        impl: Implementation,
        name: str = "w1",
        *,
        prefetch: int = 1,
        concurrency: int = 1,
        slowdown: float = 1.0,
        early_ack: bool = False,
        env: dict[str, str] | None = None,
        wait: bool = True,
        amqp_url: str | None = None,
    ) -> GroupProcess:
        spec = WorkerSpec(
            name=name,
            prefetch=prefetch,
            concurrency=concurrency,
            slowdown=slowdown,
            journal=journal_path,
            amqp_url=amqp_url or broker.failover_url,
            dot_seconds=DOT_SECONDS,
            early_ack=early_ack,
            env=env or {},
        )
        proc = GroupProcess(impl.worker_command(spec), log_path=tmp_path / f"{name}.log")
        started.append(proc)
        if wait:
            wait_for_consumer(broker, impl, proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def wait_for_consumer(broker: Node, impl: Implementation, proc: GroupProcess) -> None:
    """Wait until the worker ``proc`` has a consumer on ``impl``'s work queue (matched by its
    connection's port through the management API).

    Raises:
        AssertionError: the worker process exited first (its output is in the message).
        TimeoutError: not within :data:`WORKER_READY_TIMEOUT`.
    """
    queue = impl.task_queue()

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited with {proc.popen.returncode}:\n{proc.output()}")
        return bool(broker.management.consumers_of(queue, proc.pids()))

    wait_until(ready, WORKER_READY_TIMEOUT, interval=0.1, what=f"a consumer on {queue}")
