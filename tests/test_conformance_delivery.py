"""Delivery, round-robin dispatch, and redelivery after a worker crash (tutorial 2)."""

from __future__ import annotations

import time

import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import (
    TOPOLOGIES,
    StartWorker,
    executions_per_message,
    finished_by_worker,
    impl_params,
    journal_rows,
    wait_for_finished,
)


def test_delivery(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """N messages -> every message_id executed exactly once; the queue ends empty."""
    start_worker(impl, "w1")
    ids = impl.publish_work([f"task {i}" for i in range(30)])
    assert len(set(ids)) == 30

    rows = wait_for_finished(journal_path, ids, timeout=60)
    assert executions_per_message(rows) == {i: 1 for i in ids}
    assert all(e.outcome == "ok" and not e.redelivered and e.impl == impl.name for e in rows)
    assert all(e.published_at <= e.started_at for e in rows)

    done_at = time.time()
    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, consumers=1, fresh_after=done_at
    )


def test_round_robin(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Two workers, unlimited prefetch, both consuming first: RabbitMQ deals messages in turn."""
    start_worker(impl, "a", prefetch=0)
    start_worker(impl, "b", prefetch=0)
    ids = impl.publish_work(["."] * 10)

    rows = wait_for_finished(journal_path, ids, timeout=60)
    assert finished_by_worker(rows) == {"a": 5, "b": 5}
    if impl.name == "pika":
        # The tutorial's picture: one worker gets the odd messages, the other the even ones.
        worker_of = {e.message_id: e.worker for e in rows}
        assert len({worker_of[i] for i in ids[0::2]}) == 1
        assert len({worker_of[i] for i in ids[1::2]}) == 1


def _crash_mid_task(
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    *,
    early_ack: bool,
) -> tuple[list[str], str]:
    """Start a worker, publish 5 tasks, SIGKILL the worker mid-task, start a second one.

    Returns the published ids and the message_id the first worker was executing.
    """
    first = start_worker(impl, "first", early_ack=early_ack)
    ids = impl.publish_work(["...."] * 5)

    def in_progress() -> list[str]:
        return [e.message_id for e in journal_rows(journal_path) if not e.finished]

    wait_until(in_progress, 30, interval=0.02, what="the first worker to start a task")
    victim = in_progress()[0]
    first.kill()  # SIGKILL to the whole process group: no chance to ack or clean up
    assert victim in in_progress(), "the task finished before the kill; the test proves nothing"
    start_worker(impl, "second", early_ack=early_ack)
    return ids, victim


@pytest.mark.timeout(90)
def test_redelivery_after_worker_crash(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    ids, victim = _crash_mid_task(impl, start_worker, journal_path, early_ack=False)

    rows = wait_for_finished(journal_path, ids, timeout=60)
    per_message = executions_per_message(rows)
    assert {i for i, n in per_message.items() if n > 1} == {victim}
    assert per_message[victim] == 2
    killed, redone = [e for e in rows if e.message_id == victim]
    assert killed.worker == "first" and not killed.finished
    assert redone.worker == "second" and redone.finished and redone.redelivered
    assert all(not e.redelivered for e in rows if e.message_id != victim)
    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )


EARLY_ACK = impl_params(*TOPOLOGIES, where=lambda implementation: implementation.supports_early_ack)
"""pika and Celery: Dramatiq has no early-ack mode (it acks after the actor returns; see
``test_dramatiq_has_no_early_ack_mode``)."""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("impl", EARLY_ACK, indirect=True)
def test_early_ack_loses_the_message_in_hand(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Negative control: acknowledging on receipt (tutorial 1's auto_ack, Celery's default
    early ack) loses what the worker held when it died, and the crash check above sees it."""
    ids, victim = _crash_mid_task(impl, start_worker, journal_path, early_ack=True)

    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )
    wait_until(
        lambda: all(e.finished for e in journal_rows(journal_path) if e.worker == "second"),
        30,
        what="the second worker to go idle",
    )
    finished = {e.message_id for e in journal_rows(journal_path) if e.finished}
    assert victim not in finished
    assert len(finished) < len(ids)
