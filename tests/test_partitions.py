"""Network partitions: a node cut off from the others while it keeps running, then healed.

The cluster is :class:`~testbed.netns_cluster.NetnsCluster` (each node in its own network
namespace, ``pause_minority``, ``net_ticktime`` 4 s), one per test module, with quorum queues.
Each test runs a producer (the implementation's own, kept open, one confirmed publish at a
time) and a worker through a partition and its healing, then counts in Jepsen's terms
(:mod:`testbed.counts`): 0 confirmed messages lost, nothing unexpected, duplicates only as
redeliveries, and the queue empty after the final drain.

Negative control of each test: messages confirmed into a *classic* (non-replicated) queue homed
on the node about to be cut are, during the partition, out of reach from the majority, and the
same counting reports them lost; and messages were confirmed during the partition, so "0 lost"
is not vacuous.

Skipped, with the reason, where network namespaces cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pika
import pika.exceptions
import pytest
from pika.exceptions import ChannelClosedByBroker

from shared.impl import Implementation, WorkerSpec
from shared.journal import Execution
from testbed import partitions, registry
from testbed.counts import Attempt, CountingProducer, Counts, count
from testbed.local_node import LocalNode, local_binary_available
from testbed.netns import why_unavailable
from testbed.netns_cluster import NetnsCluster
from testbed.partitions import partitioned, rejoin, target
from testbed.process import GroupProcess, wait_until
from tests.helpers import (
    DOT_SECONDS,
    each_implementation,
    journal_rows,
    wait_for_consumer,
    wait_for_finished,
)

HOME_DOWN_HOLD = 10.0
"""Seconds a classic queue's home node stays cut off once paused
(``test_worker_waits_for_its_classic_queues_home_node``)."""

CONTROL_MESSAGES = 5
"""Messages of the negative control, in a classic queue homed on the node that is cut off."""


@pytest.fixture(scope="session")
def netns_cluster() -> Iterator[NetnsCluster]:
    """The partitionable 3-node cluster of this test process, started by the first test that
    needs it (skipped where it cannot run)."""
    reason = why_unavailable() or (None if local_binary_available() else "no rabbitmq-server")
    if reason:
        pytest.skip(f"partition tests need network namespaces: {reason}")
    with NetnsCluster.started() as cluster:
        print(f"\n{cluster.describe()}")
        yield cluster


@pytest.fixture
def cluster(
    netns_cluster: NetnsCluster, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[NetnsCluster]:
    """The session's cluster, whole again, every implementation's queues deleted; quorum queues
    and a 5 s confirm timeout for the producers of the test (as ``tests/test_cluster.py``).
    After a failed test, each node's last warnings and errors are printed (the nodes' logs are
    gone after the session)."""
    netns_cluster.start()  # a node a test left down comes back
    netns_cluster.await_healed()
    for implementation in registry.available().values():
        for queue in implementation.queues():
            netns_cluster.management.delete_queue(queue)
    monkeypatch.setenv("MQLAB_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("MQLAB_CONFIRM_TIMEOUT", "5")
    failed_before = request.session.testsfailed
    yield netns_cluster
    # A test that failed before its final count leaves its producer thread publishing; once
    # the environment above is undone it would declare the next test's queue as classic.
    for thread in threading.enumerate():
        if isinstance(thread, CountingProducer):
            thread.stop.set()
            thread.join(timeout=60)
    for node in netns_cluster.nodes:
        netns_cluster.heal(node)
    if request.session.testsfailed > failed_before:
        for node in netns_cluster.nodes:
            lines = node.broker_log.read_text(errors="replace").splitlines()
            notable = [ln for ln in lines if "[error]" in ln or "[warning]" in ln][-40:]
            print(f"\nRabbitMQ log {node.node}:\n" + "\n".join(notable))


def urls_from(cluster: NetnsCluster, first: LocalNode) -> str:
    """Every node's URL, ``first`` first: a client given this connects to ``first``."""
    return ";".join([first.amqp_url, *(n.amqp_url for n in cluster.nodes if n is not first)])


def declare_on(impl: Implementation, node: LocalNode) -> Attempt:
    """Declare the work queue through ``node`` by publishing one message there (its leader is
    then usually ``node``: RabbitMQ's default ``queue-leader-locator`` is ``client-local``)."""
    began = time.time()
    [message_id] = impl.publish_work(["declare."], amqp_url=node.amqp_url)
    return Attempt(began, time.time(), message_id)


StartWorker = Callable[..., GroupProcess]
"""``start_worker(impl, node, queue_type="quorum")``."""


@pytest.fixture
def start_worker(cluster: NetnsCluster, journal_path: str, tmp_path: Path) -> Iterator[StartWorker]:
    """``start_worker(impl, node, queue_type="quorum")``: a worker (concurrency 2) connected to
    ``node`` first,
    every node in its list, once its consumer is registered; SIGKILLed (whole group) at
    teardown, so it cannot consume the next test's messages from a queue of the same name."""
    started: list[GroupProcess] = []

    def start(impl: Implementation, node: LocalNode, queue_type: str = "quorum") -> GroupProcess:
        spec = WorkerSpec(
            name="w1",
            concurrency=2,
            journal=journal_path,
            amqp_url=urls_from(cluster, node),
            dot_seconds=DOT_SECONDS,
            # longer than a cut, a heal and a restart of a node that does not rejoin (rejoin)
            env={"MQLAB_QUEUE_TYPE": queue_type, "MQLAB_RECONNECT_SECONDS": "300"},
        )
        worker = GroupProcess(impl.worker_command(spec), log_path=tmp_path / "w1.log")
        started.append(worker)
        wait_for_consumer(cluster, impl, worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def fill_control_queue(impl: Implementation, node: LocalNode) -> tuple[str, list[Attempt]]:
    """Declare a durable *classic* queue on ``node`` (its home) and publish
    :data:`CONTROL_MESSAGES` confirmed persistent messages to it; its name and the attempts."""
    queue = f"{impl.task_queue()}.control-classic"
    attempts = []
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(node.amqp_url))) as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
        channel.confirm_delivery()
        for i in range(CONTROL_MESSAGES):
            began, message_id = time.time(), f"control-{i}"
            props = pika.BasicProperties(message_id=message_id, delivery_mode=2)
            channel.basic_publish("", queue, b"control.", props, mandatory=True)
            attempts.append(Attempt(began, time.time(), message_id))
    return queue, attempts


def drain_control_queue(queue: str, via: LocalNode) -> list[Execution]:
    """Fetch what the control queue yields through node ``via`` (``basic.get`` until empty), as
    journal-like rows; nothing when its home node is out of reach (404 NOT_FOUND)."""
    rows: list[Execution] = []
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(via.amqp_url))) as conn:
        channel = conn.channel()
        try:
            while True:
                method, props, _body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                now = time.time()
                rows.append(Execution(0, props.message_id, "control", "pika", "get", 0, False,
                                      now, now, now, "ok"))  # fmt: skip
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404, e  # the queue's home node is down or unreachable
    return rows


def final_counts(
    cluster: NetnsCluster, impl: Implementation, producer: CountingProducer, journal: str
) -> Counts:
    """Stop the producer, drain (every confirmed message finished, then the queue empty: the
    worker is still running), and count."""
    producer.stop.set()
    producer.join(timeout=60)
    assert not producer.crashed, producer.crashed
    confirmed = [a.message_id for a in producer.attempts if a.message_id]
    wait_for_finished(journal, confirmed, timeout=120)
    try:
        cluster.management.wait_for_queue(
            impl.task_queue(), 90, ready=0, unacked=0, fresh_after=time.time()
        )
        empty = True
    except TimeoutError:
        empty = False
    return count(producer.attempts, journal_rows(journal), empty)


def check(counts: Counts, rows: list[Execution], republished: int = 0) -> None:
    """The Jepsen verdict: nothing confirmed lost, nothing unexpected, the queue drained, and
    every extra run of a duplicated message a redelivery (its ack was lost with a connection
    to the cut node, so the queue delivered it again with ``redelivered`` set), except at most
    ``republished`` of them: a message the producer published again after a missing confirm
    may be stored twice, and its second copy is a fresh delivery."""
    assert not counts.lost, f"confirmed and never executed: {sorted(counts.lost)[:5]}"
    assert not counts.unexpected, f"executed, never published: {sorted(counts.unexpected)[:5]}"
    assert counts.queue_empty
    seen: set[str] = set()
    fresh_copies: list[str] = []
    for row in sorted(rows, key=lambda r: r.started_at):
        if row.message_id in seen and not row.redelivered:
            fresh_copies.append(row.message_id)
        seen.add(row.message_id)
    assert len(fresh_copies) <= republished, (
        f"{len(fresh_copies)} second runs were not redeliveries ({fresh_copies[:5]}), "
        f"but the producer republished only {republished}"
    )


@pytest.mark.broker
@pytest.mark.destructive
@pytest.mark.timeout(420)
@each_implementation()
def test_leader_isolated_while_producing_and_consuming(
    cluster: NetnsCluster, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    queue = impl.task_queue()
    declared = declare_on(impl, cluster.nodes[0])
    leader = target(cluster, "leader", queue)
    consuming, producing = (n for n in cluster.nodes if n is not leader)
    worker = start_worker(impl, consuming)
    control_queue, control_attempts = fill_control_queue(impl, leader)
    producer = CountingProducer(impl, urls_from(cluster, producing), [declared])
    producer.start()
    producer.wait_confirmed_after(0, 10, 60, "10 confirmed before the cut")
    # The producer (this process's one AMQP connection now) publishes through another node.
    assert target(cluster, "producer", queue, producer_pids=[os.getpid()]) is producing

    with partitioned(cluster, leader) as times:
        control = count(control_attempts, drain_control_queue(control_queue, consuming), True)
        producer.wait_confirmed_after(time.time(), 10, 120, "10 confirmed during the partition")
        new_leader = cluster.leader_of(queue)
    producer.wait_confirmed_after(time.time(), 5, 60, "5 confirmed after healing")
    counts = final_counts(cluster, impl, producer, journal_path)
    print(
        f"\n{impl.name}, leader isolated: {counts.line()}; {counts.extra_runs} extra runs; "
        f"partition seen in {times.detected:.1f} s, healed in {times.healed:.1f} s; "
        f"leader {leader.node} -> {new_leader.node}; control (classic queue on the cut node) "
        f"{control.line()}"
    )
    # Negative controls: the non-replicated queue's messages were out of reach (the counting
    # reports them lost), the leader moved, and messages were confirmed during the partition.
    assert len(control.lost) == CONTROL_MESSAGES
    assert new_leader.node != leader.node
    check(counts, journal_rows(journal_path), producer.republished)
    assert worker.alive()
    cluster.management.delete_queue(control_queue)


@pytest.mark.broker
@pytest.mark.destructive
@pytest.mark.timeout(420)
@each_implementation()
def test_worker_node_isolated(
    cluster: NetnsCluster, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    queue = impl.task_queue()
    declared = declare_on(impl, cluster.nodes[0])
    leader = target(cluster, "leader", queue)
    follower = target(cluster, "follower", queue)
    worker = start_worker(impl, follower)
    # The scheme cuts the worker's own node, a follower of the queue.
    consuming = target(cluster, "worker", queue, worker_pids=worker.pids())
    assert consuming is follower
    control_queue, control_attempts = fill_control_queue(impl, consuming)
    producer = CountingProducer(impl, urls_from(cluster, leader), [declared])
    producer.start()
    producer.wait_confirmed_after(0, 10, 60, "10 confirmed before the cut")

    with partitioned(cluster, consuming) as times:
        cut_at = time.time() - times.detected
        control = count(control_attempts, drain_control_queue(control_queue, leader), True)
        during_from = time.time()
        producer.wait_confirmed_after(during_from, 10, 120, "10 confirmed during the partition")
        # Paused, the cut node closes the worker's connection (the quorum queue may cancel its
        # consumer first, and a client may consume there again until the pause): the same
        # process ends up consuming through another node.
        moved: list[str] = []

        def consumes_elsewhere() -> bool:
            assert worker.alive(), worker.output()
            nodes = [c.node for c in cluster.management.consumers_of(queue, worker.pids())]
            moved[:] = [n for n in nodes if n != consuming.node]
            return bool(moved)

        wait_until(consumes_elsewhere, 120, interval=0.5, what="the worker to consume elsewhere")
        paused_in = cluster.await_paused(consuming) - cut_at
        during = producer.confirmed_after(during_from)
    counts = final_counts(cluster, impl, producer, journal_path)
    print(
        f"\n{impl.name}, worker's node isolated: {counts.line()}; {counts.extra_runs} extra "
        f"runs; partition seen in {times.detected:.1f} s, node paused after "
        f"{paused_in:.1f} s, healed in {times.healed:.1f} s; worker moved to {moved[0]}; "
        f"control (classic queue on the cut node) {control.line()}"
    )
    assert len(control.lost) == CONTROL_MESSAGES  # negative control, as above
    assert during > 0
    check(counts, journal_rows(journal_path), producer.republished)
    assert worker.alive()
    cluster.management.delete_queue(control_queue)


@pytest.mark.broker
@pytest.mark.destructive
@pytest.mark.timeout(300)
@each_implementation()
def test_worker_waits_for_its_classic_queues_home_node(
    cluster: NetnsCluster,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A durable classic work queue lives on one node, here the worker's own. Cut off, that
    node pauses and closes the worker's connection; through the other nodes the queue answers
    404 (its home node is down) until the partition heals. The same worker process then
    consumes again: messages published after healing all run. Negative controls: during the
    partition the queue really is out of reach from the majority (``basic.get`` there: 404),
    and the node really paused (so the worker's connection was closed); the partition is then
    held :data:`HOME_DOWN_HOLD` seconds, several of every worker's reconnect intervals (pika 0.5
    s, FastStream 1 s, Celery and Dramatiq 1-3 s), so each meets the 404 before the heal (the
    pika worker exited on it before it learnt to wait: this test failed then)."""
    monkeypatch.setenv("MQLAB_QUEUE_TYPE", "classic")
    home, other = cluster.nodes[0], cluster.nodes[1]
    worker = start_worker(impl, home, queue_type="classic")
    queue = impl.task_queue()
    with partitioned(cluster, home):
        cluster.await_paused(home)
        connection = pika.BlockingConnection(pika.URLParameters(other.amqp_url))
        with contextlib.closing(connection), pytest.raises(ChannelClosedByBroker) as refused:
            connection.channel().basic_get(queue, auto_ack=False)
        assert refused.value.reply_code == 404 and "home node" in refused.value.reply_text
        time.sleep(HOME_DOWN_HOLD)  # the length of the partition, not a synchronisation
        assert worker.alive(), worker.output()
    ids = impl.publish_work([f"after healing {i}." for i in range(5)], amqp_url=other.amqp_url)
    wait_for_finished(journal_path, ids, timeout=120)
    assert worker.alive(), worker.output()


def _row(message_id: str, published_at: float, redelivered: bool = False) -> Execution:
    return Execution(0, message_id, "work", "pika", "w1", 1, redelivered, published_at,
                     published_at + 1, published_at + 2, "ok")  # fmt: skip


def test_counts_in_jepsen_terms() -> None:
    """Each count on a made-up run, so each can be told apart (and fail)."""
    attempts = [
        Attempt(0, 1, "a"),  # executed once
        Attempt(1, 2, "b"),  # executed twice: duplicated
        Attempt(2, 3, "c"),  # never executed: lost
        Attempt(3, 4),  # unconfirmed, executed all the same: recovered
        Attempt(4, 5),  # unconfirmed, never executed
    ]
    rows = [_row("a", 0.5), _row("b", 1.5), _row("b", 1.5, True), _row("r", 3.5), _row("x", 9)]
    counts = count(attempts, rows, queue_empty=False)
    assert counts.as_dict() == {
        "attempted": 5, "confirmed": 3, "unconfirmed": 2, "lost": 1, "duplicated": 1,
        "unexpected": 1, "recovered": 1, "queue_empty": False,
    }  # fmt: skip
    assert counts.lost == {"c"} and counts.recovered == {"r"} and counts.unexpected == {"x"}
    assert counts.extra_runs == 1


NETWORK_OWNER = textwrap.dedent(
    """
    import json, subprocess, sys
    from testbed.netns import Network
    network = Network(3)
    # A process in a namespace outside our process groups, as the epmd a node daemonises.
    netns = network.hosts[0].netns
    subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"], start_new_session=True)
    links = network.bridges + network.links
    print(json.dumps({"netns": network.namespaces, "links": links}), flush=True)
    sys.stdin.read()
    """
)


def _links() -> set[str]:
    """Names of the root namespace's links (a veth end shows as ``name@ifN``)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


@pytest.mark.timeout(90)
def test_owner_death_leaves_no_namespace_or_bridge() -> None:
    """SIGKILL of the program that made a network leaves no namespace, bridge, veth pair or
    process in a namespace (the reaper). Control: they existed while it lived."""
    reason = why_unavailable()
    if reason:
        pytest.skip(f"partition tests need network namespaces: {reason}")
    owner = subprocess.Popen(
        [sys.executable, "-c", NETWORK_OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    made = json.loads(owner.stdout.readline())
    namespaces = set(made["netns"])

    def listed() -> set[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()} & namespaces

    wait_until(lambda: subprocess.run(["ip", "netns", "pids", made["netns"][0]],
                                      capture_output=True, text=True).stdout.strip(),
               30, what="the process in the namespace")  # fmt: skip
    assert listed() == namespaces and set(made["links"]) <= _links()

    owner.kill()
    owner.wait(timeout=30)
    wait_until(lambda: not listed(), 30, what="the namespaces to be deleted")
    wait_until(lambda: not set(made["links"]) & _links(), 30,
               what="the bridges and veth pairs to be deleted")  # fmt: skip


class _StuckCluster:
    """A stand-in for :class:`NetnsCluster` in :func:`rejoin`'s test: ``await_healed`` times
    out ``stuck`` times; a node in ``running`` answers that it runs, the others do not answer."""

    def __init__(self, running: set[str], stuck: int) -> None:
        self.nodes = [LocalNode.__new__(LocalNode) for _ in range(3)]
        for i, node in enumerate(self.nodes):
            node.node = f"n{i}"
        self.running, self.stuck = running, stuck
        self.calls: list[str] = []

    def await_healed(self, timeout: float = 120.0) -> None:
        self.calls.append("await_healed")
        if self.stuck:
            self.stuck -= 1
            raise TimeoutError("timed out waiting for the cluster to heal")

    def nodes_seen_by(self, observer: LocalNode) -> dict[str, dict[str, bool]]:
        if observer.node not in self.running:
            return {}
        return {n.node: {"running": n.node in self.running} for n in self.nodes}

    def kill_node(self, node: LocalNode) -> None:
        self.calls.append(f"kill {node.node}")

    def start(self) -> None:
        self.calls.append("start")


def test_nodes_that_do_not_rejoin_are_restarted_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """:func:`rejoin` restarts the nodes that do not answer as running once the cluster is not
    whole in time; controls: a whole cluster is left alone, and a cluster that is not whole
    while every node answers (another cause) still fails, nothing killed."""
    monkeypatch.setattr(partitions, "SECOND_OPINION_AFTER", 0.0)
    stuck = _StuckCluster({"n1", "n2"}, stuck=1)
    assert rejoin(cast(NetnsCluster, stuck), stuck.nodes[0])
    assert stuck.calls == ["await_healed", "kill n0", "start", "await_healed"]
    whole = _StuckCluster({"n0", "n1", "n2"}, stuck=0)
    assert not rejoin(cast(NetnsCluster, whole), whole.nodes[0])
    assert whole.calls == ["await_healed"]
    other_cause = _StuckCluster({"n0", "n1", "n2"}, stuck=1)
    with pytest.raises(TimeoutError):
        rejoin(cast(NetnsCluster, other_cause), other_cause.nodes[0])
    assert other_cause.calls == ["await_healed"]
