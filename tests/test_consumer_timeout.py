"""Delivery acknowledgement timeout: RabbitMQ closes a channel whose delivery stays unacked past
``consumer_timeout`` with ``406 PRECONDITION_FAILED - delivery acknowledgement on channel N timed
out``. Every worker survives it: a new channel, the message redelivered (at-least-once), the
messages behind it served.

RabbitMQ 3.10 checks the timeout on each channel's tick (``rabbit_channel``,
``evaluate_consumer_timeout`` on ``channel_tick_interval``, 60 s by default), not continuously;
this private node ticks every 250 ms with a 2 s timeout, as RabbitMQ's own
``consumer_timeout_SUITE`` does; its work queue is of the test's topology's queue type (on a
quorum queue the long message is dead-lettered after ``MQLAB_DELIVERY_LIMIT`` deliveries; on a
classic queue it comes back without bound). The negative control runs the same task on the
session broker (default timeout, 30 minutes): one execution, no channel closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.impl import Implementation, WorkerSpec
from testbed.local_node import LocalNode, local_binary_available
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import (
    DOT_SECONDS,
    WORKER_READY_TIMEOUT,
    StartWorker,
    journal_rows,
    wait_for_finished,
)

CONSUMER_TIMEOUT_MS = 2000
TASK_SECONDS = 4.0
LONG_BODY = "." * round(TASK_SECONDS / DOT_SECONDS)
CLOSED = re.compile(r"delivery acknowledgement( on channel \d+)? timed out")
"""RabbitMQ 3.10: "delivery acknowledgement on channel 1 timed out. Timeout value used: 2000
ms"; later versions: "delivery acknowledgement timed out"."""


@pytest.fixture(scope="module")
def timeout_node() -> Iterator[Node]:
    """A private node with ``consumer_timeout`` 2 s, checked every 250 ms."""
    if not local_binary_available():
        pytest.skip("needs the rabbitmq-server binary for a node with a short consumer_timeout")
    node = LocalNode({"consumer_timeout": CONSUMER_TIMEOUT_MS, "channel_tick_interval": 250})
    try:
        node.start()
        yield node
    finally:
        node.close()


def start(impl: Implementation, node: Node, journal: str, log: Path) -> GroupProcess:
    """A worker with three slots on ``node``, once its consumer is registered: the long message
    holds one slot, and after a channel close its old execution still runs in a second one
    while the redelivered copy starts, so the messages behind it need a third."""
    spec = WorkerSpec(
        name="w1",
        concurrency=3,
        journal=journal,
        amqp_url=node.amqp_url,
        dot_seconds=DOT_SECONDS,
    )
    proc = GroupProcess(impl.worker_command(spec), log_path=log)
    queue = impl.task_queue()
    wait_until(
        lambda: proc.alive() and bool(node.management.consumers_of(queue, proc.pids())),
        WORKER_READY_TIMEOUT,
        what=f"a consumer on {queue}",
    )
    return proc


@pytest.mark.broker  # timeout_node: its own private node
@pytest.mark.timeout(180)
def test_worker_survives_the_delivery_acknowledgement_timeout(
    timeout_node: Node,
    impl: Implementation,
    topology: str,
    journal_path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQLAB_QUEUE_TYPE", topology)  # the worker inherits it
    for queue in impl.queues():
        timeout_node.management.delete_queue(queue)
    worker = start(impl, timeout_node, journal_path, tmp_path / "w1.log")
    try:
        [long_id] = impl.publish_work([LONG_BODY], amqp_url=timeout_node.amqp_url)
        wait_until(lambda: CLOSED.search(worker.output()), 60, what="RabbitMQ to close the channel")
        # At-least-once: the long message comes back, flagged redelivered.
        wait_until(
            lambda: any(
                r.message_id == long_id and r.redelivered for r in journal_rows(journal_path)
            ),
            60,
            what="the long message to be redelivered",
        )
        # And the worker goes on: messages published now are served.
        ids = impl.publish_work(["."] * 3, amqp_url=timeout_node.amqp_url)
        wait_for_finished(journal_path, ids, timeout=60)
        assert worker.alive(), worker.output()
        wait_until(
            lambda: timeout_node.management.consumers_of(impl.task_queue(), worker.pids()),
            30,
            what="the worker's consumer (between two channel closes)",
        )
    finally:
        worker.kill()
        for queue in impl.queues():
            timeout_node.management.delete_queue(queue)


@pytest.mark.timeout(120)
def test_negative_control_default_timeout_runs_the_task_once(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    worker = start_worker(impl, "w1", concurrency=2)
    [long_id] = impl.publish_work([LONG_BODY])
    rows = wait_for_finished(journal_path, [long_id], timeout=60)
    assert [(r.redelivered, r.outcome) for r in rows] == [(False, "ok")]
    assert not CLOSED.search(worker.output())
