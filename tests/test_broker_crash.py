"""A broker SIGKILLed under a running program: the program recovers (reconnects and consumes
again) or exits non-zero with one error line, never a traceback or a hang; a producer's
confirmed messages are still there after the restart; a worker stopped (SIGTERM) while it
waits for the broker exits 0, as a stop while connected does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import IMPLEMENTATIONS, StartWorker, assert_one_line_error, each_implementation


def _ready(broker: Node, queue: str) -> int:
    """Messages ready in ``queue`` (0 while it does not exist yet)."""
    stats = broker.management.queue(queue)
    return stats.ready if stats is not None else 0


@pytest.mark.destructive
@pytest.mark.timeout(120)
@each_implementation()
def test_producer_reports_a_broker_crash_in_one_line(
    killable_broker: Node, impl: Implementation, tmp_path: Path
) -> None:
    """Node SIGKILLed while new_task --count N publishes under confirms: a non-zero exit and
    one error line (raw_pika: StreamLostError traceback), and every message the producer had
    been confirmed is still there after the restart (nothing lost silently)."""
    broker = killable_broker
    with GroupProcess(
        impl.new_task_command(["x"], count=200_000), log_path=tmp_path / "producer.log"
    ) as producer:
        try:
            wait_until(
                lambda: _ready(broker, impl.task_queue()) > 50,
                30,
                what="publishing to be under way",
            )
            broker.kill()
            code = producer.wait(timeout=60)
        finally:
            broker.start()
        output = producer.output()
    assert code not in (None, 0), output
    assert_one_line_error(code or 0, output)


@pytest.mark.destructive
@pytest.mark.timeout(150)
@each_implementation()
def test_worker_survives_or_reports_a_broker_crash(
    killable_broker: Node, impl: Implementation, start_worker: StartWorker
) -> None:
    """After the broker is SIGKILLed and restarted, a worker either reconnects and consumes
    again (Dramatiq does) or has exited non-zero with one error line. raw_pika died with a
    StreamLostError traceback."""
    broker = killable_broker
    worker = start_worker(impl, "w1")
    broker.sync_metadata()  # the queue the worker just declared is on disk (Node.sync_metadata)
    try:
        broker.kill()
        worker.wait(timeout=5)
    finally:
        broker.start()
    if worker.alive():
        wait_until(
            lambda: broker.management.consumers_of(impl.task_queue(), worker.pids()),
            60,
            what="the worker to consume again",
        )
        return
    assert_one_line_error(worker.popen.returncode, worker.output())


@pytest.mark.destructive
@pytest.mark.timeout(150)
@each_implementation()
def test_receiver_survives_or_reports_a_broker_crash(
    killable_broker: Node, impl: Implementation, tmp_path: Path
) -> None:
    """Tutorial 1's receiver when its broker is SIGKILLed: it keeps running (Celery and
    Dramatiq retry) or exits non-zero with one error line. raw_pika.receive died with a
    StreamLostError traceback."""
    broker = killable_broker
    with GroupProcess(impl.receive_command(), log_path=tmp_path / "receive.log") as receiver:
        wait_until(
            lambda: broker.management.consumers_of(impl.hello_queue(), receiver.pids()),
            30,
            what="the receiver to consume",
        )
        broker.sync_metadata()
        try:
            broker.kill()
            code = receiver.wait(timeout=5)
        finally:
            broker.start()
        if code is not None:
            assert_one_line_error(code, receiver.output())


@pytest.mark.destructive
@pytest.mark.timeout(150)
@pytest.mark.parametrize("broker_down", [True, False], ids=["reconnecting", "control-connected"])
def test_pika_worker_stopped_while_reconnecting_exits_0(
    killable_broker: Node, start_worker: StartWorker, broker_down: bool
) -> None:
    """SIGTERM (systemctl stop) to the pika worker while it retries a lost broker: it exited
    130, as if interrupted, with no " stopped" line, where Celery and Dramatiq exit 0; a
    supervisor counts that as a failure. Control: SIGTERM while connected exits 0."""
    broker = killable_broker
    worker = start_worker(IMPLEMENTATIONS["pika"], "w1")
    broker.sync_metadata()
    try:
        if broker_down:
            broker.kill()
            wait_until(lambda: "reconnecting" in worker.output(), 30, what="the worker to retry")
        os.killpg(worker.popen.pid, signal.SIGTERM)
        code = worker.wait(timeout=15)
    finally:
        if broker_down:
            broker.start()
    assert code == 0, worker.output()
    assert "w1 stopped" in worker.output()
