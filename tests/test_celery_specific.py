"""Celery-specific cases: what a Celery worker's process structure and settings change.

* Kill the whole worker (main process and prefork pool child) mid-task: redelivered elsewhere.
* Kill only the pool child mid-task: ``task_reject_on_worker_lost`` requeues the message; with it
  off (negative control) Celery acks the message as failed and it is lost — the known trap
  (Celery docs, "Tasks: acks_late" and "Configuration: task_reject_on_worker_lost").
* One long task then three short ones across two single-process workers: with prefetch
  multiplier 1 and late ack the short ones do not wait behind the long one; with unlimited
  prefetch (negative control) one of them does.
* A task name the worker does not know, a body it cannot decode and arguments that do not fit
  the task: logged, dropped, and the rest of the queue is still executed.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pika
import psutil
import pytest

from celery_impl import broker as celery_settings
from shared.impl import Implementation
from shared.journal import Execution
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import (
    IMPLEMENTATIONS,
    StartWorker,
    executions_per_message,
    journal_rows,
    wait_for_finished,
)

pytestmark = pytest.mark.skipif(
    "celery" not in IMPLEMENTATIONS, reason="celery_impl not importable"
)

LONG = "." * 30  # 3 s at DOT_SECONDS = 0.1
SHORT = "."


@pytest.fixture
def celery() -> Implementation:
    """The Celery implementation."""
    return IMPLEMENTATIONS["celery"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _in_progress(journal_path: str) -> list[Execution]:
    return [e for e in journal_rows(journal_path) if not e.finished]


def _wait_in_progress(journal_path: str) -> Execution:
    wait_until(lambda: _in_progress(journal_path), 30, interval=0.02, what="a task to start")
    return _in_progress(journal_path)[0]


@pytest.mark.timeout(90)
def test_kill_whole_worker_mid_task(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """SIGKILL to the main process and its pool child: the task in hand goes to another worker."""
    first = start_worker(celery, "first")
    ids = celery.publish_work(["...."] * 4)
    victim = _wait_in_progress(journal_path)
    pids = first.pids()
    assert len(pids) >= 2, f"expected a main process and a pool child, got {pids}"
    assert victim.pid in pids[1:], "the task should run in a pool child"

    first.kill()
    wait_until(lambda: all(_gone(p) for p in pids), 10, what="the main process and pool child")
    assert victim.message_id in {e.message_id for e in _in_progress(journal_path)}
    start_worker(celery, "second")

    rows = wait_for_finished(journal_path, ids, timeout=60)
    per_message = executions_per_message(rows)
    assert {i for i, n in per_message.items() if n > 1} == {victim.message_id}
    redone = [e for e in rows if e.message_id == victim.message_id][-1]
    assert redone.worker == "second" and redone.finished and redone.redelivered
    broker.management.wait_for_queue(
        celery.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )


def _kill_pool_child(
    celery: Implementation, start_worker: StartWorker, journal_path: str, env: dict[str, str]
) -> tuple[list[str], Execution, str]:
    """One worker, three tasks; SIGKILL only the pool child running the first.

    Returns the ids, the killed execution, and the worker's log so far.
    """
    worker = start_worker(celery, "w1", env=env)
    ids = celery.publish_work(["......"] * 3)
    victim = _wait_in_progress(journal_path)
    assert victim.pid != worker.pid, "the task should run in a pool child, not the main process"
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: _gone(victim.pid), 10, what="the pool child to die")
    assert worker.alive(), worker.output()
    assert victim.message_id in {e.message_id for e in _in_progress(journal_path)}
    return ids, victim, worker.output()


@pytest.mark.timeout(90)
def test_pool_child_killed_task_requeued_with_reject_on_worker_lost(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    ids, victim, _ = _kill_pool_child(celery, start_worker, journal_path, env={})

    rows = wait_for_finished(journal_path, ids, timeout=60)
    runs = [e for e in rows if e.message_id == victim.message_id]
    assert len(runs) == 2
    assert runs[1].finished and runs[1].redelivered and runs[1].pid != victim.pid
    assert executions_per_message(rows) == {i: (2 if i == victim.message_id else 1) for i in ids}
    broker.management.wait_for_queue(
        celery.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )


@pytest.mark.timeout(90)
def test_pool_child_killed_task_lost_without_reject_on_worker_lost(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Negative control: task_reject_on_worker_lost off, acks_late on: the message fails with
    WorkerLostError and never runs again, though the worker goes on working (Celery's default
    acks it, losing it; with ``task_acks_on_failure_or_timeout=False`` it is rejected without
    requeue and so parked in the dead-letter queue)."""
    env = {celery_settings.REJECT_ON_WORKER_LOST_ENV: "0"}
    ids, victim, _ = _kill_pool_child(celery, start_worker, journal_path, env=env)

    others = [i for i in ids if i != victim.message_id]
    wait_for_finished(journal_path, others, timeout=60)
    broker.management.wait_for_queue(
        celery.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )
    runs = [e for e in journal_rows(journal_path) if e.message_id == victim.message_id]
    assert len(runs) == 1 and not runs[0].finished
    broker.management.wait_for_queue(celery.dead_letter_queue(), 30, ready=1)


def _long_then_short(
    broker: Node,
    celery: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    prefetch: int,
) -> tuple[dict[str, Execution], list[str], list[int]]:
    """Two single-process workers; publish one long task then three short ones in one go.

    Returns the executions by message_id, the ids in publish order, and every consumer's
    unacked count sampled until all four were done.
    """
    start_worker(celery, "a", prefetch=prefetch)
    start_worker(celery, "b", prefetch=prefetch)
    ids = celery.publish_work([LONG, SHORT, SHORT, SHORT])
    unacked: list[int] = []

    def sample_until_done() -> bool:
        unacked.extend(c.unacked for c in broker.management.consumers(celery.task_queue()))
        return {e.message_id for e in journal_rows(journal_path) if e.finished} >= set(ids)

    wait_until(sample_until_done, 60, interval=0.1, what="all four tasks to be executed")
    return {e.message_id: e for e in journal_rows(journal_path)}, ids, unacked


@pytest.mark.timeout(90)
def test_short_tasks_do_not_wait_behind_a_long_one(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    rows, ids, unacked = _long_then_short(broker, celery, start_worker, journal_path, prefetch=1)
    long_run, shorts = rows[ids[0]], [rows[i] for i in ids[1:]]

    assert {s.worker for s in shorts} == {"a", "b"} - {long_run.worker}
    assert long_run.finished_at is not None
    # The long task takes 3 s; the short ones are all done within its first half.
    assert all(s.finished_at and s.finished_at < long_run.finished_at - 1.5 for s in shorts)
    assert unacked, "no consumer was ever sampled"
    assert any(n == 1 for n in unacked), "never saw a busy consumer"
    assert max(unacked) <= 1, f"a consumer held more than its concurrency (1): {unacked}"


@pytest.mark.timeout(90)
def test_unlimited_prefetch_strands_a_short_task_behind_the_long_one(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Negative control: with unlimited prefetch RabbitMQ deals the four messages in turn, so
    the long task's worker also holds a short one, which waits until the long one is done."""
    rows, ids, unacked = _long_then_short(broker, celery, start_worker, journal_path, prefetch=0)
    long_run, shorts = rows[ids[0]], [rows[i] for i in ids[1:]]

    stranded = [s for s in shorts if s.worker == long_run.worker]
    assert stranded
    assert long_run.finished_at is not None
    assert all(s.started_at >= long_run.finished_at for s in stranded)
    assert max(unacked) > 1


def _publish_bad_messages(amqp_url: str, queue: str) -> None:
    """Three messages a Celery worker cannot run, published with plain pika."""

    def headers(task: str) -> dict[str, object]:
        task_id = str(uuid.uuid4())
        return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0}

    json_props = {"content_type": "application/json", "content_encoding": "utf-8"}
    good_body = json.dumps([["."], {}, {"callbacks": None, "errbacks": None}]).encode()
    bad = [
        # A task name no worker registered.
        (pika.BasicProperties(headers=headers("no.such.task"), **json_props), good_body),
        # The right task name, a body that is not JSON at all.
        (pika.BasicProperties(headers=headers("celery_impl.work"), **json_props), b"{not json"),
        # The right task name, arguments that do not fit work(body).
        (
            pika.BasicProperties(headers=headers("celery_impl.work"), **json_props),
            json.dumps([[1, 2, 3], {}, {}]).encode(),
        ),
    ]
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for props, body in bad:
        channel.basic_publish("", queue, body, props, mandatory=True)
    connection.close()


@pytest.mark.timeout(90)
def test_unknown_task_and_invalid_bodies_are_logged_and_do_not_wedge_the_worker(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    before = celery.publish_work(["good 1.", "good 2."])
    _publish_bad_messages(broker.amqp_url, celery.task_queue())
    after = celery.publish_work(["good 3.", "good 4."])
    worker = start_worker(celery, "w1")

    rows = wait_for_finished(journal_path, before + after, timeout=60)
    assert executions_per_message(rows) == {i: 1 for i in before + after}
    assert all(e.outcome == "ok" for e in rows)
    broker.management.wait_for_queue(
        celery.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )
    assert worker.alive()

    def logged() -> bool:
        out = worker.output()
        return (
            "unknown task 'no.such.task'" in out
            and "the body does not decode" in out
            and "arguments do not fit" in out
        )

    wait_until(logged, 10, what="the worker to log all three errors")
    # Each one parked in the dead-letter queue (tests/test_poison.py checks bodies and headers).
    broker.management.wait_for_queue(celery.dead_letter_queue(), 30, ready=3)

    # Still working after all that.
    late = celery.publish_work(["good 5."])
    wait_for_finished(journal_path, late, timeout=30)


@pytest.mark.timeout(90)
def test_sigterm_is_a_warm_shutdown(
    broker: Node, celery: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """SIGTERM mid-task: the task in hand is finished and acked, the rest stays in the queue."""
    worker = start_worker(celery, "w1")
    ids = celery.publish_work(["..........", "one more.", "and another."])
    victim = _wait_in_progress(journal_path)

    assert worker.terminate(timeout=30) == 0, worker.output()
    assert victim.message_id in {e.message_id for e in journal_rows(journal_path) if e.finished}
    assert [e.message_id for e in journal_rows(journal_path)] == [victim.message_id]
    stats = broker.management.wait_for_queue(
        celery.task_queue(), 30, ready=2, unacked=0, consumers=0, fresh_after=time.time()
    )
    assert stats.ready == len(ids) - 1


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "impl", [pytest.param(("celery", "quorum"), id="celery-quorum")], indirect=True
)
def test_no_native_delayed_delivery_queues_on_quorum_queues(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """A Celery worker on quorum queues declares no ``celery_delayed_*`` queues (mqlab's
    consumer leaves out Celery's ``DelayedDelivery`` step; celery_impl.consumer)."""
    from celery.utils.quorum_queues import detect_quorum_queues
    from celery.worker.consumer import Consumer as CeleryConsumer

    from celery_impl.broker import make_app
    from celery_impl.consumer import Consumer

    # Control: Celery's own rule would start native delayed delivery for these queues.
    assert detect_quorum_queues(make_app(), "amqp")[0]
    assert any(s.endswith(":DelayedDelivery") for s in CeleryConsumer.Blueprint.default_steps)
    assert not any(s.endswith(":DelayedDelivery") for s in Consumer.Blueprint.default_steps)

    start_worker(impl)
    ids = impl.publish_work(["."])
    wait_for_finished(journal_path, ids, timeout=30)  # the worker's steps have all started
    delayed = [q for q in broker.management.queue_names() if q.startswith("celery_delayed")]
    assert delayed == []
