"""A fault during a retry loses nothing.

A task that keeps raising is taken while a memory alarm blocks every publisher
(``set_vm_memory_high_watermark``, RabbitMQ docs "Memory Alarms"). Its retries cannot be
published then (Dramatiq republishes a retry to ``.DQ``; pika and Celery retry in the worker and
park by rejecting, which the broker dead-letters without a publish). Whatever the
implementation, the message stays unacked until the alarm clears (a Dramatiq worker's retry
publish waits for it, :class:`dramatiq_impl.middleware.RetryUntilPublished`), then it runs its
:data:`~shared.poison.MAX_ATTEMPTS` attempts and is parked: nothing is acked away. Control: the
same without an alarm. And with the worker's connections closed while the retry waits to be
published (the retry then goes out on a new connection; the redelivered original may run
again: at least once, never lost).
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from shared import poison, tasks
from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import StartWorker, executions_per_message, impl_params, journal_rows
from tests.test_worker_exit_codes import close_connections_of

BLOCKED_TIMEOUT = "3"
"""``MQLAB_BLOCKED_TIMEOUT`` of the worker, seconds (the issue's example)."""


def _watermark(broker: Node, fraction: str) -> None:
    try:
        broker.rabbitmqctl("set_vm_memory_high_watermark", fraction)
    except NotImplementedError as e:
        pytest.skip(str(e))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("impl", impl_params("classic"), indirect=True)
@pytest.mark.parametrize(
    ("alarm", "cut"),
    [(True, False), (True, True), (False, False)],
    ids=["memory-alarm", "memory-alarm-connections-closed", "control-no-alarm"],
)
def test_a_task_failing_while_publishers_are_blocked_is_parked_not_lost(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    alarm: bool,
    cut: bool,
) -> None:
    [failing] = impl.publish_work([f"fails during the alarm {tasks.FAIL_MARKER}"])
    if alarm:
        _watermark(broker, "0.0000001")
    try:
        if alarm:
            wait_until(lambda: "memory" in broker.management.alarms(), 30, what="the alarm")
        worker = start_worker(impl, "w1", env={"MQLAB_BLOCKED_TIMEOUT": BLOCKED_TIMEOUT})
        wait_until(
            lambda: executions_per_message(journal_rows(journal_path))[failing] >= 1,
            60,
            what="the worker to run the failing task",
        )
        if alarm:  # past twice the blocked timeout: held unacked, or parked in-process
            held_until = time.time() + 2 * float(BLOCKED_TIMEOUT)
            wait_until(
                lambda: _parked(broker, impl) or _held_since(broker, impl, held_until),
                60,
                what="the message held unacked through the alarm, or parked",
            )
        if cut:  # the worker's connections lost while its retry waits to be published
            user = urlparse(broker.amqp_url).username or ""
            wait_until(lambda: close_connections_of(broker, user) > 0, 30, what="connections")
    finally:
        if alarm:
            _watermark(broker, "0.4")
            wait_until(lambda: not broker.management.alarms(), 30, what="the alarm to clear")
    # Parked: once, or (connections closed) once more for the redelivered original, whose
    # retry was already on its way: at least once, never lost.
    wait_until(lambda: _parked(broker, impl, at_least=1), 90, what="the message parked")
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=0, unacked=0)
    assert executions_per_message(journal_rows(journal_path))[failing] >= poison.MAX_ATTEMPTS
    assert worker.alive(), worker.output()


def _held_since(broker: Node, impl: Implementation, since: float) -> bool:
    """Whether the work queue holds the message unacked in figures collected after ``since``."""
    stats = broker.management.queue(impl.task_queue())
    return stats is not None and stats.unacked == 1 and stats.sampled_after >= since


def _parked(broker: Node, impl: Implementation, at_least: int = 1) -> bool:
    stats = broker.management.queue(impl.dead_letter_queue())
    return stats is not None and stats.ready >= at_least
