"""Warm shutdown: SIGTERM mid-task finishes the message in hand and acks it before exiting, so
the next worker does not execute it again; messages not started stay in the queue."""

from __future__ import annotations

import time

import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import StartWorker, executions_per_message, journal_rows, wait_for_finished


@pytest.mark.timeout(90)
def test_sigterm_finishes_the_message_in_hand(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    first = start_worker(impl, "first")
    ids = impl.publish_work(["........"] * 3)  # 0.8 s each
    wait_until(
        lambda: any(not e.finished for e in journal_rows(journal_path)),
        30,
        interval=0.02,
        what="the worker to start a task",
    )
    in_hand = next(e.message_id for e in journal_rows(journal_path) if not e.finished)

    code = first.terminate(timeout=30)
    assert code is not None, "the worker did not exit after SIGTERM"
    rows = journal_rows(journal_path)
    assert [e.finished for e in rows if e.message_id == in_hand] == [True]

    by_first = {e.message_id for e in rows if e.worker == "first"}
    assert all(e.finished for e in rows), "the worker abandoned a task it had started"

    start_worker(impl, "second")
    rows = wait_for_finished(journal_path, ids, timeout=60)
    # Nothing the first worker finished runs again: its acks reached the broker before it left.
    assert executions_per_message(rows) == {i: 1 for i in ids}
    assert {e.message_id for e in rows if e.worker == "second"} == set(ids) - by_first
    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )
