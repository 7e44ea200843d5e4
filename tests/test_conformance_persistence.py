"""Durable queue + persistent messages survive a broker crash (SIGKILL of the node), and a
running worker outlives it: it reconnects by itself and takes new work.

The negative control rides the same restart: transient messages in a non-durable queue, and
transient messages in a durable queue, are gone afterwards, so the check can fail.
"""

from __future__ import annotations

import time

import pika
import pytest

from shared.impl import Implementation
from testbed.node import Node
from tests.helpers import (
    TOPOLOGIES,
    StartWorker,
    executions_per_message,
    impl_params,
    wait_for_finished,
)

N = 50
CONTROL_QUEUE = "mqlabtest.control.transient-queue"
CONTROL_DURABLE_QUEUE = "mqlabtest.control.durable-queue-transient-messages"


def _publish_transient_controls(amqp_url: str) -> None:
    """10 transient messages into a non-durable queue and 10 into a durable one (plain pika)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(CONTROL_QUEUE, durable=False)
    channel.queue_declare(CONTROL_DURABLE_QUEUE, durable=True)
    for queue in (CONTROL_QUEUE, CONTROL_DURABLE_QUEUE):
        for i in range(10):
            channel.basic_publish(
                "", queue, f"control {i}".encode(), pika.BasicProperties(delivery_mode=1)
            )
    connection.close()


@pytest.mark.destructive
@pytest.mark.timeout(150)
def test_persistence_across_broker_restart(
    killable_broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    broker = killable_broker
    for queue in (CONTROL_QUEUE, CONTROL_DURABLE_QUEUE):
        broker.management.delete_queue(queue)
    ids = impl.publish_work([f"persist {i}" for i in range(N)])  # confirmed, persistent
    _publish_transient_controls(broker.amqp_url)
    published = time.time()
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=N, fresh_after=published)
    broker.management.wait_for_queue(CONTROL_QUEUE, 30, ready=10, fresh_after=published)
    broker.management.wait_for_queue(CONTROL_DURABLE_QUEUE, 30, ready=10, fresh_after=published)

    # The queues were declared a moment ago: make sure their definitions are on disk (RabbitMQ
    # does not fsync its metadata per declare; this test is about the messages).
    broker.sync_metadata()
    broker.kill()
    broker.start()
    restarted = time.time()

    stats = broker.management.wait_for_queue(impl.task_queue(), 30, ready=N, fresh_after=restarted)
    assert stats.durable
    # Negative control: what was not persisted is gone after the very same restart.
    assert broker.management.queue(CONTROL_QUEUE) is None
    broker.management.wait_for_queue(CONTROL_DURABLE_QUEUE, 30, ready=0, fresh_after=restarted)
    broker.management.delete_queue(CONTROL_DURABLE_QUEUE)

    start_worker(impl, "after-restart")
    rows = wait_for_finished(journal_path, ids, timeout=60)
    assert executions_per_message(rows) == {i: 1 for i in ids}


RESTART_FLAKE = pytest.mark.flaky(
    reruns=1, only_rerun=[r"TimeoutError: .*every message to be executed"]
)
"""Celery's worker on the quorum topology once (one full run in many, three clusters loading
the machine) did not finish the new work within the deadline after the whole cluster was
SIGKILLed and started, and passed on its rerun. The first attempt's traceback was not kept then
(``--rerun-show-tracebacks`` keeps it now); the suspected cause is the worker's reconnect after
a whole-cluster restart, a product matter, not found yet."""


RECONNECT_WINDOW = {"MQLAB_RECONNECT_SECONDS": "600"}
"""The survivor's reconnect window (pika and FastStream; 60 s by default, docs/settings.md):
longer than a whole-cluster restart can take here. Under the load of a full run, a restart in
which one member lost a boot race and was booted again (``testbed.cluster.RESTART_RACES``) took
over 60 s, the pika worker gave up reconnecting as configured, and none of the new work ran
(``test_worker_resumes_after_broker_restart[pika-quorum]`` in CI, 2026-12-07)."""


@pytest.mark.destructive
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "impl", impl_params(*TOPOLOGIES, marks={"celery-quorum": RESTART_FLAKE}), indirect=True
)
def test_worker_resumes_after_broker_restart(
    killable_broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """A running worker outlives a broker crash: it reconnects by itself and takes new work."""
    broker = killable_broker
    worker = start_worker(impl, "survivor", env=RECONNECT_WINDOW)
    broker.sync_metadata()  # the queue the worker just declared is on disk (Node.sync_metadata)
    broker.kill()
    broker.start()

    ids = impl.publish_work([f"after restart {i}" for i in range(5)])
    rows = wait_for_finished(journal_path, ids, timeout=90)
    assert worker.alive()
    assert {e.worker for e in rows if e.message_id in ids} == {"survivor"}
