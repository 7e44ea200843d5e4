"""Bad input: one clear error line, a non-zero exit, and nothing already accepted is lost."""

from __future__ import annotations

import subprocess
import time

import pika
import pytest

from shared.errors import Unroutable
from shared.impl import Command, Implementation, WorkerSpec
from testbed.node import Node
from testbed.process import GroupProcess
from tests.helpers import run_to_end


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def _run(command: Command, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_to_end(command, env, timeout=30)  # a program that retries forever fails here


def test_worker_refuses_a_non_durable_queue_of_the_same_name(
    broker: Node, impl: Implementation, tmp_path: object
) -> None:
    """An existing non-durable work queue: the worker exits naming 406 and the fix, and the
    message already in that queue is still there."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = connection.channel()
    channel.queue_declare(impl.task_queue(), durable=False)
    channel.basic_publish("", impl.task_queue(), b"accepted before the worker came")
    connection.close()

    spec = WorkerSpec(name="w406", amqp_url=broker.amqp_url)
    with GroupProcess(impl.worker_command(spec), log_path=f"{tmp_path}/w406.log") as worker:
        code = worker.wait(timeout=30)
        output = worker.output()
    assert code not in (None, 0), output
    errors = _error_lines(output)
    assert len(errors) == 1, output
    assert "406" in errors[0] and "PRECONDITION_FAILED" in errors[0]
    assert "delete" in errors[0]  # the fix
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=1, fresh_after=time.time())


def test_publish_to_a_missing_queue_raises(broker: Node, impl: Implementation) -> None:
    """mandatory + publisher confirms: an unroutable message is an error, not a silent drop."""
    with pytest.raises(Unroutable):
        impl.publish_work(["lost?"], queue="mqlabtest.no-such-queue", declare=False)


# Unreachable broker, wrong password, missing vhost, 403s, bad settings and options: every
# program, in tests/test_bad_input_corpus.py.
