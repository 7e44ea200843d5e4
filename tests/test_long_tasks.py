"""Long tasks: a task that lasts several heartbeat timeouts runs once, is acked once, and the
worker keeps its connection (the work never blocks the connection's heartbeats).

The negative control is the pika trap itself (pika issues #418, #930): a consumer that does the
same work inside pika's callback misses its heartbeats, RabbitMQ drops the connection, and the
message, never acked, goes back to the queue.
"""

from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import DOT_SECONDS, StartWorker, journal_rows, wait_for_finished

HEARTBEAT = 2
"""Seconds: the heartbeat timeout the worker asks for (``MQLAB_HEARTBEAT``)."""
TASK_SECONDS = 4 * HEARTBEAT
LONG_BODY = "." * round(TASK_SECONDS / DOT_SECONDS)


@pytest.mark.timeout(120)
def test_a_task_longer_than_the_heartbeat_runs_once_on_one_connection(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    worker = start_worker(impl, "w1", env={"MQLAB_HEARTBEAT": str(HEARTBEAT)})
    queue = impl.task_queue()
    (before,) = broker.management.consumers_of(queue, worker.pids())
    [long_id] = impl.publish_work([LONG_BODY])

    rows = wait_for_finished(journal_path, [long_id], timeout=TASK_SECONDS + 60)
    wait_until(
        lambda: (q := broker.management.queue(queue)) is not None and q.ready + q.unacked == 0,
        30,
        what="the long task's message to be acked",
    )
    assert [(r.message_id, r.redelivered, r.outcome) for r in rows] == [(long_id, False, "ok")]
    assert rows[0].finished_at is not None
    assert rows[0].finished_at - rows[0].started_at >= TASK_SECONDS
    (after,) = broker.management.consumers_of(queue, worker.pids())
    assert after.peer_port == before.peer_port, "the worker reconnected"
    # Still the same, and still serving: one more message runs on the same connection.
    [quick_id] = impl.publish_work(["."])
    wait_for_finished(journal_path, [quick_id], timeout=30)
    assert len(journal_rows(journal_path)) == 2
    assert worker.alive()
    assert "lost its connection" not in worker.output()


@pytest.mark.timeout(60)
def test_negative_control_work_inside_the_pika_callback_loses_the_connection(
    broker: Node,
) -> None:
    """The same long work done inside pika's callback: no heartbeats, the connection is dropped,
    the ack cannot be sent, and the message is ready again for the next consumer."""
    queue = "mqlabtest.long-task-in-callback"
    params = pika.URLParameters(broker.amqp_url)
    params.heartbeat = HEARTBEAT
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.basic_publish("", queue, b"long", pika.BasicProperties(delivery_mode=2))
    method, _, _ = channel.basic_get(queue)
    assert method is not None
    ack_failed = False
    time.sleep(TASK_SECONDS)  # the work, on the connection's only thread: no heartbeats
    try:
        channel.basic_ack(method.delivery_tag)
        connection.process_data_events(time_limit=1)  # flush: raises once the peer is gone
    except pika.exceptions.AMQPError:
        ack_failed = True
    try:
        assert ack_failed, "the in-callback consumer kept its connection"
        wait_until(
            lambda: (q := broker.management.queue(queue)) is not None and q.ready == 1,
            30,
            what="the unacked message to return to the queue",
        )
    finally:
        broker.management.delete_queue(queue)
        if connection.is_open:
            connection.close()
