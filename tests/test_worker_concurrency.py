"""Worker slots: a worker started with ``concurrency`` N runs N tasks at the same time and holds
N messages (prefetch 1 per slot); with one slot it runs one at a time (the negative control)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.impl import Command, Implementation, WorkerSpec
from shared.journal import Execution
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import DOT_SECONDS, IMPLEMENTATIONS, StartWorker, journal_rows, wait_for_consumer

TASKS = 4
BODY = "." * 8  # 0.8 s at the tests' 0.1 s per dot


def peak_overlap(rows: list[Execution]) -> int:
    """The largest number of executions running at one moment (from the journal's times)."""
    events = sorted(
        [(e.started_at, 1) for e in rows] + [(e.finished_at or e.started_at, -1) for e in rows],
        key=lambda ev: (ev[0], ev[1]),  # an end before a start at the same instant
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(120)
@pytest.mark.parametrize("slots", [2, 1], ids=["2-slots", "1-slot"])
def test_n_slots_run_n_tasks_at_once(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str, slots: int
) -> None:
    start_worker(impl, "w1", concurrency=slots)
    prefetch_seen: set[int] = set()
    for c in broker.management.consumers(impl.task_queue()):
        prefetch_seen.add(c.prefetch_count)
    ids = impl.publish_work([BODY] * TASKS)

    def done() -> bool:
        for c in broker.management.consumers(impl.task_queue()):
            prefetch_seen.add(c.prefetch_count)
        return {e.message_id for e in journal_rows(journal_path) if e.finished} >= set(ids)

    wait_until(done, 90, interval=0.1, what="every task to be executed")
    rows = journal_rows(journal_path)
    assert len(rows) == TASKS
    assert peak_overlap(rows) == slots, rows
    assert prefetch_seen == {slots}


@pytest.mark.timeout(120)
def test_celery_threads_pool_runs_n_tasks_at_once(
    broker: Node, journal_path: str, tmp_path: Path
) -> None:
    """``python -m celery_impl.worker --pool threads -c 2``: two threads, two tasks at once."""
    if "celery" not in IMPLEMENTATIONS:
        pytest.skip("celery_impl not importable")
    impl = IMPLEMENTATIONS["celery"]
    spec = WorkerSpec(
        name="w1",
        concurrency=2,
        journal=journal_path,
        amqp_url=broker.amqp_url,
        dot_seconds=DOT_SECONDS,
    )
    command = impl.worker_command(spec)
    with GroupProcess(
        Command([*command.argv, "--pool", "threads"], command.env), log_path=tmp_path / "w1.log"
    ) as worker:
        wait_for_consumer(broker, impl, worker)
        ids = impl.publish_work([BODY] * TASKS)
        wait_until(
            lambda: {e.message_id for e in journal_rows(journal_path) if e.finished} >= set(ids),
            90,
            what="every task to be executed",
        )
        rows = journal_rows(journal_path)
        assert len(rows) == TASKS
        assert peak_overlap(rows) == 2, rows
        assert {r.pid for r in rows} == {worker.popen.pid}  # threads: one process
