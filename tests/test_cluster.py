"""Quorum queues on the 3-node cluster: what happens when nodes die.

Every test runs for each implementation on the ``quorum`` topology only (a single node has no
node to lose), against the session's cluster, and leaves every node running again. Persistence
across a restart of the *whole* cluster is ``test_persistence_across_broker_restart[*-quorum]``
(``tests/test_conformance_persistence.py``: ``broker.kill()`` SIGKILLs all three nodes).

RabbitMQ docs, "Quorum Queues": a message confirmed to its publisher is on a majority of the
queue's nodes, so it survives the loss of a minority; without a majority the queue neither
confirms nor serves.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter

import psutil
import pytest

from shared.errors import MqlabError
from shared.impl import Command, Implementation
from testbed.cluster import Cluster
from testbed.local_node import LocalNode
from testbed.process import wait_until
from tests.helpers import (
    StartWorker,
    executions_per_message,
    impl_params,
    journal_rows,
    run_to_end,
    wait_for_consumer,
    wait_for_finished,
)

pytestmark = pytest.mark.destructive

QUORUM = impl_params("quorum")


def _urls_from(cluster: Cluster, first: LocalNode) -> str:
    """Every node's URL, ``first`` first: a client given this connects to ``first``."""
    rest = [n.amqp_url for n in cluster.nodes if n is not first]
    return ";".join([first.amqp_url, *rest])


class Producer(threading.Thread):
    """Publishes one work message at a time through the implementation's producer, under
    confirms, until stopped; keeps the message_ids the broker confirmed and counts the
    publishes that failed (reported unsent: not confirmed)."""

    def __init__(self, impl: Implementation, amqp_url: str) -> None:
        super().__init__(daemon=True)
        self.impl, self.amqp_url = impl, amqp_url
        self.confirmed: list[tuple[float, str]] = []  # (confirmed at, message_id)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.crashed = ""  # the traceback of an exception that is not an MqlabError

    def run(self) -> None:
        try:
            self._publish_until_stopped()
        except BaseException:  # a publish raised what no user should see: the test says what
            self.crashed = traceback.format_exc()
            raise

    def _publish_until_stopped(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                [message_id] = self.impl.publish_work([f"node loss {n}."], amqp_url=self.amqp_url)
            except MqlabError as e:  # not confirmed: not counted as sent
                self.failures.append(str(e))
                time.sleep(0.2)  # back off while the cluster elects a new leader
                continue
            self.confirmed.append((time.time(), message_id))

    def count(self) -> int:
        return len(self.confirmed)

    def wait_for(self, count: int, timeout: float, what: str) -> None:
        """Wait until ``count`` messages are confirmed.

        Raises:
            AssertionError: not in time; says what the producer reported and where it is.
        """
        try:
            wait_until(lambda: self.count() >= count or bool(self.crashed), timeout, what=what)
            if self.crashed:
                raise AssertionError(f"the producer raised, waiting for {what}:\n{self.crashed}")
        except TimeoutError as e:
            frame = sys._current_frames().get(self.ident or 0)
            where = "".join(traceback.format_stack(frame)[-8:]) if frame else self.crashed
            raise AssertionError(
                f"{e}: {self.count()} confirmed; failures {self.failures[-5:]}; producer at\n"
                f"{where}"
            ) from None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("impl", QUORUM, indirect=True)
def test_node_loss_loses_no_confirmed_message(
    cluster: Cluster,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = impl.task_queue()
    # A publish caught by the leader's death waits at most 5 s for its confirm, then is
    # reported unsent and published anew (a new message_id): the producer does not republish
    # it itself (MQLAB_FAILOVER_TIMEOUT=0), so every extra run below is a redelivery; the
    # producer's own ride-through is test_producer_rides_through_the_loss_of_its_node.
    monkeypatch.setenv("MQLAB_CONFIRM_TIMEOUT", "5")
    monkeypatch.setenv("MQLAB_FAILOVER_TIMEOUT", "0")
    # Two workers, each connected to another node first.
    w1 = start_worker(impl, "w1", env={"AMQP_URL": _urls_from(cluster, cluster.nodes[0])})
    w2 = start_worker(impl, "w2", env={"AMQP_URL": _urls_from(cluster, cluster.nodes[1])})
    producer = Producer(impl, cluster.failover_url)
    producer.start()
    try:
        producer.wait_for(20, 60, "20 confirmed messages")
        leader = cluster.leader_of(queue)
        killed_at = time.time()
        cluster.kill_node(leader)
        before = producer.count()
        producer.wait_for(before + 20, 90, "publishing to go on")
        new_leader = cluster.leader_of(queue)
        rejoin_seconds = cluster.start_node(leader)
        after_rejoin = producer.count()
        producer.wait_for(after_rejoin + 10, 60, "more publishes")
    finally:
        producer.stop.set()
        producer.join(timeout=60)
    confirmed = [m for _, m in producer.confirmed]
    # Negative controls: the leader really moved, and messages were confirmed while it was
    # down, so "nothing lost" is not vacuous.
    assert new_leader.node != leader.node
    assert any(t > killed_at for t, _ in producer.confirmed[before:])

    rows = wait_for_finished(journal_path, confirmed, timeout=120)
    runs = executions_per_message(rows)
    assert set(confirmed) <= set(runs)  # every confirmed message ran at least once
    # Duplicates: a message whose ack was lost with a connection to the killed node is
    # delivered again, flagged redelivered; every extra run must be such a redelivery.
    duplicates = {m: n for m, n in runs.items() if n > 1}
    first_runs: set[str] = set()
    for row in sorted(rows, key=lambda r: r.started_at):
        if row.message_id in first_runs:
            assert row.redelivered, f"a second run of {row.message_id} was not a redelivery"
        first_runs.add(row.message_id)
    # Publishes that failed were reported as failures and never counted as sent; some of them
    # may still have been stored (the confirm was lost with the connection) and run: extras.
    extras = set(runs) - set(confirmed)
    assert len(extras) <= len(producer.failures)
    print(
        f"\n{impl.name}: {len(confirmed)} confirmed, {len(producer.failures)} publishes reported "
        f"unsent, {len(extras)} of those ran anyway, {len(duplicates)} duplicates "
        f"({sum(duplicates.values()) - len(duplicates)} extra runs, all redelivered); "
        f"leader {leader.node} -> {new_leader.node}; rejoined in {rejoin_seconds:.1f} s"
    )
    # The workers resumed by themselves: alive, and both ran messages published after the kill.
    assert w1.alive() and w2.alive()
    late = {m for t, m in producer.confirmed if t > killed_at}
    by_worker = Counter(r.worker for r in journal_rows(journal_path) if r.message_id in late)
    assert by_worker["w1"] > 0 and by_worker["w2"] > 0, by_worker
    cluster.management.wait_for_queue(queue, 60, ready=0, unacked=0, fresh_after=time.time())


class KeptProducer(threading.Thread):
    """One producer kept open (``impl.producer()``, opened, used and closed in this thread, as
    Dramatiq's connection is per thread) publishing ``total`` work messages one after the
    other; keeps the confirmed message_ids, the one-line error that stopped it, and its count
    of republished messages."""

    def __init__(self, impl: Implementation, amqp_url: str, total: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.impl, self.amqp_url, self.total, self.pause = impl, amqp_url, total, pause
        self.confirmed: list[str] = []
        self.error = ""
        self.republished = 0
        self.crashed = ""

    def run(self) -> None:
        try:
            with self.impl.producer(amqp_url=self.amqp_url) as producer:
                try:
                    for n in range(self.total):
                        message = producer.publish(f"ride through {n}.")
                        self.confirmed.append(message.message_id)
                        time.sleep(self.pause)  # a producer with a pace, not a benchmark
                except MqlabError as e:
                    self.error = str(e)
                self.republished = producer.republished
        except BaseException:
            self.crashed = traceback.format_exc()
            raise


def _nodes_of_connections(cluster: Cluster) -> set[str]:
    """The nodes holding an AMQP connection of this (the test's) process: the kept producer's,
    found by its local ports among the management API's connections (``peer_port``)."""
    amqp_ports = {n.amqp_port for n in cluster.nodes}
    ports = {
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port in amqp_ports
    }
    return {c["node"] for c in cluster.management.connections() if c.get("peer_port") in ports}


def _producer_node(cluster: Cluster) -> str:
    """The node of this process's one AMQP connection (the kept producer's), once the
    management API lists it (it lists a new connection with a lag).

    Raises:
        TimeoutError: not exactly one such connection within 30 s.
    """
    found: list[set[str]] = [set()]

    def one() -> bool:
        found[0] = _nodes_of_connections(cluster)
        return len(found[0]) == 1

    wait_until(one, 30, interval=0.2, what="the producer's connection in the management API")
    [node] = found[0]
    return node


RIDE_TOTAL = 300
"""Messages the kept producer publishes in the ride-through test, one every ``RIDE_PAUSE``
seconds at most (a long-lived producer); its node dies after 30."""

RIDE_PAUSE = 0.02
"""Seconds between two publishes of the kept producer, so the kill lands mid-stream."""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lose", ["its node", "the majority"])
@pytest.mark.parametrize("impl", QUORUM, indirect=True)
def test_producer_rides_through_the_loss_of_its_node(
    cluster: Cluster,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    monkeypatch: pytest.MonkeyPatch,
    lose: str,
) -> None:
    """The node a kept producer is connected to is SIGKILLed mid-stream: the producer
    reconnects to a surviving node, republishes what was not confirmed (same message_id) and
    publishes all ``RIDE_TOTAL``; every confirmed message runs (0 lost), and every extra run is
    a republish (the producer's count) or a redelivery. Negative control (``the majority``: a
    second node killed with it): the producer stops with its one line within
    ``MQLAB_FAILOVER_TIMEOUT``, messages left unconfirmed, and still nothing confirmed is
    lost."""
    queue = impl.task_queue()
    monkeypatch.setenv("MQLAB_CONFIRM_TIMEOUT", "5")
    monkeypatch.setenv("MQLAB_FAILOVER_TIMEOUT", "20")
    start_worker(impl, "w1", env={"AMQP_URL": _urls_from(cluster, cluster.nodes[-1])})
    cluster.sync_metadata()  # the queue the worker just declared is on disk (Node.sync_metadata)
    producer = KeptProducer(impl, cluster.failover_url, RIDE_TOTAL, RIDE_PAUSE)
    producer.start()
    killed: list[LocalNode] = []
    try:
        wait_until(lambda: len(producer.confirmed) >= 30 or not producer.is_alive(), 60,
                   what="30 confirmed messages")  # fmt: skip
        assert not producer.crashed and not producer.error, producer.crashed or producer.error
        own = cluster.node(_producer_node(cluster))
        killed_after = len(producer.confirmed)
        killed.append(own)
        cluster.kill_node(own)
        if lose == "the majority":
            other = next(n for n in cluster.nodes if n is not own and n is not cluster.nodes[-1])
            killed.append(other)
            cluster.kill_node(other)
        else:
            cluster.leader_of(queue)  # a leader on a live node: the queue serves again
        producer.join(timeout=200)
        assert not producer.is_alive() and not producer.crashed, producer.crashed
    finally:
        for node in killed:
            cluster.start_node(node)
    confirmed = producer.confirmed
    assert killed_after < RIDE_TOTAL - 50  # the kill landed mid-stream
    if lose == "its node":
        assert producer.error == "" and len(confirmed) == RIDE_TOTAL, producer.error
    else:
        assert producer.error and "\n" not in producer.error, producer.error
        assert "did not confirm" in producer.error or "lost the connection" in producer.error
        assert len(confirmed) < RIDE_TOTAL

    rows = wait_for_finished(journal_path, confirmed, timeout=120)
    runs = executions_per_message(rows)
    assert set(confirmed) <= set(runs)  # 0 lost
    seen: set[str] = set()
    not_redelivered = 0
    for row in sorted(rows, key=lambda r: r.started_at):
        if row.message_id in seen and not row.redelivered:
            not_redelivered += 1  # a republished message stored twice
        seen.add(row.message_id)
    assert not_redelivered <= producer.republished
    print(
        f"\n{impl.name} (lose {lose}): killed after {killed_after}, {len(confirmed)} of "
        f"{RIDE_TOTAL} confirmed, {producer.republished} republished, "
        f"{sum(runs.values()) - len(runs)} extra runs ({not_redelivered} of them republished "
        f"duplicates); error: {producer.error or '-'}"
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("impl", QUORUM, indirect=True)
def test_worker_connected_to_the_lost_node_fails_over(
    cluster: Cluster, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    queue = impl.task_queue()
    lost = cluster.nodes[1]
    worker = start_worker(impl, "w1", env={"AMQP_URL": _urls_from(cluster, lost)})
    # Negative control: the worker's consumer really is on the node about to die.
    [consumer] = cluster.management.consumers_of(queue, worker.pids())
    assert consumer.node == lost.node

    cluster.sync_metadata()  # the queue the worker just declared is on disk (Node.sync_metadata)
    cluster.kill_node(lost)
    wait_for_consumer(cluster, impl, worker)  # consuming again, same process
    [consumer] = cluster.management.consumers_of(queue, worker.pids())
    assert consumer.node != lost.node

    ids = impl.publish_work([f"after failover {i}." for i in range(5)])
    rows = wait_for_finished(journal_path, ids, timeout=60)
    assert {r.worker for r in rows if r.message_id in ids} == {"w1"}
    assert worker.alive()
    cluster.start_node(lost)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("impl", QUORUM, indirect=True)
def test_minority_left_refuses_publishes(
    cluster: Cluster, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    # Unconfirmed after 3 s, republished for 5 s more (MQLAB_FAILOVER_TIMEOUT), then the line.
    env = {
        "AMQP_URL": cluster.failover_url,
        "MQLAB_CONFIRM_TIMEOUT": "3",
        "MQLAB_FAILOVER_TIMEOUT": "5",
    }
    # Negative control: with every node up the very same program publishes and exits 0.
    ok = run_to_end(impl.new_task_command(["before."]), env, timeout=60)
    assert ok.returncode == 0, ok.stderr

    survivor, *gone = cluster.nodes
    cluster.sync_metadata()  # the queue just declared is on disk (Node.sync_metadata)
    for node in gone:
        cluster.kill_node(node)
    refused = run_to_end(impl.new_task_command(["no quorum."]), env, timeout=60)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0
    assert len(lines) == 1, refused.stderr
    assert "did not confirm" in lines[0] and "0 were confirmed" in lines[0], lines[0]
    assert " [x] Sent" not in refused.stdout  # nothing reported as sent

    cluster.start_node(gone[0])  # a majority again (2 of 3): the queue has a leader again
    ids = impl.publish_work([f"quorum back {i}." for i in range(3)])
    start_worker(impl, "w1")
    wait_for_finished(journal_path, ids, timeout=90)
    cluster.start_node(gone[1])


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "impl", impl_params("quorum", where=lambda i: i.name == "pika"), indirect=True
)
def test_broker_purge_works_with_the_first_node_down(
    cluster: Cluster, impl: Implementation
) -> None:
    """``mqlab broker purge`` given every node's URI purges through a surviving node, and
    prints the count RabbitMQ returns."""
    impl.publish_work(["purge me."] * 3)
    first = cluster.nodes[0]
    cluster.sync_metadata()  # the queue just declared is on disk (Node.sync_metadata)
    cluster.kill_node(first)
    try:
        cluster.leader_of(impl.task_queue())  # served again (this test is about the CLI)
        command = Command([sys.executable, "-m", "lab.cli", "broker", "purge", "--impl", "pika",
                           "--amqp-url", cluster.failover_url])  # fmt: skip
        result = run_to_end(command, {}, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"pika: {impl.task_queue()}: purged 3 ready message(s)" in result.stdout
        # And the queue really is empty now (asked of a surviving node).
        cluster.management.wait_for_queue(impl.task_queue(), 30, ready=0, fresh_after=time.time())
    finally:
        cluster.start_node(first)
