"""Stopping means stopping, for every way a supervisor or a terminal stops a worker.

SIGTERM (``systemctl stop``, ``docker stop``) and SIGINT (Ctrl+C), sent to the worker's process
or to its whole process group (systemd's ``KillMode=control-group``; a terminal sends Ctrl+C to
the foreground group): each is a warm shutdown. The task in hand is finished once and acked, the
worker exits 0 with no ``error:`` line, and nothing runs again on the next worker. Negative
control: SIGKILL to the group does lose the task in hand, which the next worker runs again,
``redelivered`` (so the checks below can see a duplicate).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import (
    StartWorker,
    executions_per_message,
    impl_params,
    journal_rows,
    wait_for_finished,
)

LONG_TASK = "." * 40
"""A 4 s task (``MQLAB_DOT_SECONDS`` 0.1): long enough to be in hand when the signal lands."""

DELIVERIES = [
    pytest.param(signal.SIGTERM, False, id="sigterm-process"),
    pytest.param(signal.SIGTERM, True, id="sigterm-group"),
    pytest.param(signal.SIGINT, False, id="ctrl-c-process"),
    pytest.param(signal.SIGINT, True, id="ctrl-c-group"),
    pytest.param(signal.SIGKILL, True, id="control-sigkill-group"),
]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("impl", impl_params("classic"), indirect=True)
@pytest.mark.parametrize(("sig", "to_group"), DELIVERIES)
def test_a_stop_signal_finishes_the_task_in_hand(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    sig: signal.Signals,
    to_group: bool,
) -> None:
    worker = start_worker(impl, "first")
    [in_hand] = impl.publish_work([LONG_TASK])
    wait_until(
        lambda: any(e.message_id == in_hand for e in journal_rows(journal_path)),
        30,
        interval=0.05,
        what="the worker to start the task",
    )
    if to_group:
        os.killpg(worker.pid, sig)
    else:
        os.kill(worker.pid, sig)
    code = worker.wait(timeout=60)
    output = worker.output()

    start_worker(impl, "second")
    rows = wait_for_finished(journal_path, [in_hand], timeout=60)
    broker.management.wait_for_queue(
        impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
    )
    rows = journal_rows(journal_path)
    runs = executions_per_message(rows)
    if sig == signal.SIGKILL:  # the control: the task in hand was lost and runs again
        assert runs[in_hand] == 2, rows
        assert [e.worker for e in rows if e.finished] == ["second"]
        return
    assert code == 0, output
    assert runs[in_hand] == 1, f"the task in hand ran {runs[in_hand]} times\n{output}"
    assert [(e.worker, e.outcome) for e in rows] == [("first", "ok")], rows
    assert "error:" not in output and "Traceback" not in output, output
    assert " stopped" in output or impl.name == "dramatiq", output
