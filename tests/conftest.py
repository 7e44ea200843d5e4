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

Every test that uses one of :data:`BROKER_FIXTURES` gets the ``broker`` marker at collection
(:func:`pytest_collection_modifyitems`); tests that start nodes themselves carry it explicitly.
``pytest -m "not broker"`` runs the rest, which start no RabbitMQ node.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import requests

from shared.impl import Implementation, WorkerSpec
from testbed.cluster import Cluster
from testbed.node import Node
from testbed.process import GroupProcess
from testbed.provider import provision
from tests.helpers import (
    DOT_SECONDS,
    IMPLEMENTATIONS,
    TOPOLOGIES,
    StartWorker,
    external,
    heal,
    impl_params,
    restart_nodes_without_statistics,
    restoring_env,
    topology_of,
    wait_for_consumer,
)

BROKER_FIXTURES = frozenset({"broker", "single_node", "_cluster_node"})
"""The fixtures that start (or reach) a RabbitMQ node; every fixture that needs a node
(``cluster``, ``killable_broker``, ``start_worker``...) depends on ``broker``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``broker`` every test whose fixture closure holds one of :data:`BROKER_FIXTURES`."""
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed test, add the tail of each worker's log (``start_worker`` writes
    ``<tmp_path>/<name>.log``) and, if it ran on private nodes, each node's last warnings and
    errors from its server log to the report (the nodes and their logs are gone after the
    session)."""
    report = yield
    if report.failed and call.when != "teardown":
        tmp = getattr(item, "funcargs", {}).get("tmp_path")
        for worker_log in sorted(Path(tmp).glob("*.log")) if isinstance(tmp, Path) else []:
            tail = worker_log.read_text(errors="replace").splitlines()[-60:]
            report.sections.append((f"worker log {worker_log.name}", "\n".join(tail)))
        node = getattr(item, "funcargs", {}).get("broker")
        for local in getattr(node, "nodes", [node]):
            log = getattr(local, "broker_log", None)
            if log is None or not Path(log).exists():
                continue
            lines = Path(log).read_text(errors="replace").splitlines()
            notable = [ln for ln in lines if "[error]" in ln or "[warning]" in ln][-40:]
            report.sections.append((f"RabbitMQ log {local.node}", "\n".join(notable)))
    return report


@pytest.fixture(scope="session")
def single_node() -> Iterator[Node]:
    """One node for the session: private (killable) unless ``AMQP_URL`` names a broker."""
    prefix = {"MQLAB_QUEUE_PREFIX": f"mqlabtest-{uuid.uuid4().hex[:8]}."} if external() else {}
    with provision() as b:
        print(f"\n{b.describe()}")
        restore = restoring_env(prefix)  # somebody else's broker: keep to our own queue names
        try:
            yield b
        finally:
            restore()


@pytest.fixture(scope="session")
def _cluster_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """The 3-node cluster for the session (the broker of the ``quorum`` topology); on somebody
    else's broker, that broker (quorum queues, no node loss)."""
    if external():
        yield request.getfixturevalue("single_node")
        return
    with provision("cluster") as c:
        print(f"\n{c.describe()}")
        yield c


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``classic`` or ``quorum``: the topology of this test (from its ``impl`` parameter)."""
    return topology_of(request)


@pytest.fixture
def broker(request: pytest.FixtureRequest, topology: str) -> Iterator[Node]:
    """The node (or cluster) of this test's topology, whole, with ``AMQP_URL`` (every node) and
    ``MQLAB_QUEUE_TYPE`` set for the test."""
    node: Node = request.getfixturevalue("_cluster_node" if topology == "quorum" else "single_node")
    if isinstance(node, Cluster):
        heal(node)
    restart_nodes_without_statistics(node)
    restore = restoring_env(
        {
            "AMQP_URL": node.failover_url,
            "MQLAB_QUEUE_TYPE": topology,
            # raw_pika sets its quorum work queue's dead-letter policy there (shared.policy)
            "MQLAB_MANAGEMENT_URL": ";".join(
                n.management_url for n in (node.nodes if isinstance(node, Cluster) else [node])
            ),
        }
    )
    try:
        yield node
    finally:
        restore()


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
    """Delete every implementation's queues before each test that uses the broker: those the
    broker lists (one ``GET``, then a ``DELETE`` each; most tests leave one implementation's
    two or three, not all fifteen)."""
    if "broker" not in request.fixturenames:
        return
    b: Node = request.getfixturevalue("broker")
    names = {q for implementation in IMPLEMENTATIONS.values() for q in implementation.queues()}
    try:
        for queue in sorted(names.intersection(b.management.queue_names())):
            b.management.delete_queue(queue)
    except requests.RequestException:
        if not isinstance(b, Cluster):
            raise
        b.reset()  # a queue without a leader cannot be deleted: start from an empty cluster


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    """Path of a fresh execution journal for this test."""
    return str(tmp_path / "journal.db")


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
