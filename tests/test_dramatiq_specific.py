"""Dramatiq-specific cases: process layout, retries and dead-lettering, per-thread
prefetch, warm shutdown. The conformance suite covers the rest through the common interface."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from dramatiq_impl import actors
from dramatiq_impl.broker import MAX_RETRIES, declare, make_broker, task_queue
from shared.impl import Implementation, WorkerSpec
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
    "dramatiq" not in IMPLEMENTATIONS, reason="dramatiq_impl not importable"
)


@pytest.fixture
def impl() -> Implementation:
    return IMPLEMENTATIONS["dramatiq"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _in_progress(journal_path: str) -> list[str]:
    return [e.message_id for e in journal_rows(journal_path) if not e.finished]


@pytest.mark.timeout(90)
def test_sigkill_of_all_worker_processes_redelivers_to_another_worker(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """The native worker is a main process plus forked worker processes; SIGKILL them all
    mid-task and the task is redelivered, flagged, and completed once by the next worker."""
    first = start_worker(impl, "first")
    pids = first.pids()
    assert len(pids) >= 2, f"expected main + worker process, got {pids}"
    ids = impl.publish_work(["......"] * 3)
    wait_until(lambda: _in_progress(journal_path), 30, interval=0.02, what="a task in hand")
    victim = _in_progress(journal_path)[0]
    victim_pid = next(e.pid for e in journal_rows(journal_path) if e.message_id == victim)
    assert victim_pid in pids and victim_pid != first.pid  # run by a forked worker process

    first.kill()
    wait_until(lambda: not any(_alive(p) for p in pids), 10, what="every worker process to die")
    assert victim in _in_progress(journal_path), "finished before the kill: proves nothing"
    start_worker(impl, "second")

    rows = wait_for_finished(journal_path, ids, timeout=60)
    assert executions_per_message(rows)[victim] == 2
    killed, redone = [e for e in rows if e.message_id == victim]
    assert killed.worker == "first" and not killed.finished
    assert redone.worker == "second" and redone.finished and redone.redelivered
    assert redone.outcome == "ok"
    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )


@pytest.mark.timeout(90)
def test_failing_message_is_retried_a_bounded_number_of_times_then_dead_lettered(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """A poison message (a body that is not text: ``work`` raises AttributeError) is retried
    MAX_RETRIES times through ``.DQ``, then lands in ``.XQ``; other messages keep flowing."""
    queue = task_queue()
    producer = make_broker(broker.amqp_url)
    declare(producer, queue)
    wrong = actors.work.message(42)  # type: ignore[arg-type]  # a wrong argument on purpose
    poison = producer.enqueue(wrong.copy(queue_name=queue)).message_id
    producer.close()
    good = impl.publish_work(["ok."] * 5)
    start_worker(impl, "w1")

    broker.management.wait_for_queue(f"{queue}.XQ", 30, ready=1, fresh_after=time.time())
    later = impl.publish_work(["after."] * 3)  # the worker is still serving
    rows = wait_for_finished(journal_path, [*good, *later], timeout=30)

    attempts = [e for e in rows if e.message_id == poison]
    assert len(attempts) == 1 + MAX_RETRIES
    assert all(e.outcome == "error" for e in attempts)
    assert all(e.outcome == "ok" for e in rows if e.message_id != poison)
    assert executions_per_message(e for e in rows if e.message_id != poison) == {
        i: 1 for i in [*good, *later]
    }
    broker.management.wait_for_queue(queue, 30, ready=0, unacked=0, fresh_after=time.time())
    broker.management.wait_for_queue(f"{queue}.DQ", 30, ready=0, unacked=0, fresh_after=time.time())
    # Still exactly one dead letter: it did not loop back.
    broker.management.wait_for_queue(f"{queue}.XQ", 30, ready=1, fresh_after=time.time())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("prefetch", [1, 2], ids=["prefetch=threads", "control-prefetch=2"])
def test_short_tasks_go_to_the_free_worker(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    prefetch: int,
) -> None:
    """Two single-thread workers, one long task then three short ones. With prefetch = threads
    (1) the short ones all run on the other worker, before the long one ends, and no consumer
    holds more than one unacked message. Negative control: with prefetch 2 the long task's
    worker holds a short one behind it."""
    start_worker(impl, "a", prefetch=prefetch)
    start_worker(impl, "b", prefetch=prefetch)
    long_id, *short_ids = impl.publish_work(["." * 20, ".", ".", "."])

    samples: list[int] = []

    def sample_until_done() -> bool:
        samples.extend(c.unacked for c in broker.management.consumers(impl.task_queue()))
        finished = {e.message_id for e in journal_rows(journal_path) if e.finished}
        return finished >= {long_id, *short_ids}

    wait_until(sample_until_done, 60, interval=0.1, what="all four tasks")
    rows = {e.message_id: e for e in journal_rows(journal_path)}
    long_row = rows[long_id]
    behind_long = [
        i
        for i in short_ids
        if rows[i].worker == long_row.worker or rows[i].finished_at > long_row.finished_at  # type: ignore[operator]
    ]
    if prefetch == 1:
        assert behind_long == [], {i: rows[i] for i in short_ids}
        assert samples and max(samples) <= 1, samples
    else:
        assert behind_long, "control: prefetch 2 should queue a short task behind the long one"
        assert max(samples) == 2, samples


@pytest.mark.timeout(90)
@pytest.mark.parametrize("target", ["main-process", "process-group"])
def test_sigterm_finishes_and_acks_the_task_in_hand(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    target: str,
) -> None:
    """SIGTERM mid-task (to the main process, as ``docker stop`` does, or to every process of
    the group, as systemd does): the task finishes, its ack reaches the broker before the worker
    exits, and the next worker does not run it again."""
    first = start_worker(impl, "first")
    ids = impl.publish_work(["." * 15, "x.", "y."])
    wait_until(lambda: _in_progress(journal_path), 30, interval=0.02, what="a task in hand")
    victim = _in_progress(journal_path)[0]

    if target == "main-process":
        code = first.terminate(timeout=30)
    else:
        first.signal(signal.SIGTERM)
        code = first.wait(timeout=30)
    assert code == 0, first.output()
    exited = time.time()
    rows = journal_rows(journal_path)
    assert [e.outcome for e in rows if e.message_id == victim] == ["ok"]
    # Acked before exit: nothing unacked, and the two untouched messages are back in the queue.
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=2, unacked=0, fresh_after=exited)

    start_worker(impl, "second")
    rows = wait_for_finished(journal_path, ids, timeout=30)
    assert executions_per_message(rows) == {i: 1 for i in ids}
    assert {e.worker for e in rows if e.message_id != victim} == {"second"}


def test_dramatiq_has_no_early_ack_mode(impl: Implementation) -> None:
    """Dramatiq acks a message only after its actor returns (or it is dead-lettered); no
    setting acks on receipt, so the early-ack negative control is not generated for it and a
    worker asked for one is refused."""
    assert not impl.supports_early_ack
    with pytest.raises(ValueError, match="no early-ack mode"):
        impl.worker_command(WorkerSpec(name="w1", early_ack=True))
    # Negative control: pika has the mode, and the same spec gives it the flag.
    pika_impl = IMPLEMENTATIONS["pika"]
    assert (
        pika_impl.early_ack_flag
        in pika_impl.worker_command(WorkerSpec(name="w1", early_ack=True)).argv
    )
