"""The RabbitMQ tutorial's own programs share ``task_queue`` with the pika implementation.

Tutorial 2 for Python (2026) declares ``task_queue`` durable with ``x-queue-type: quorum`` and
no other argument. With ``MQLAB_QUEUE_TYPE=quorum`` the pika implementation declares it the same
way and dead-letters through the policy ``mqlab-task_queue`` (:mod:`shared.policy`), so both
orders work: the tutorial first, then mqlab; mqlab first, then the tutorial. And what mqlab
cannot process is still parked in ``task_queue.dead``. Control: without a management API to set
the policy, mqlab declares the x-arguments and the tutorial's queue refuses it (406).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import tasks
from shared.errors import QueueMismatch
from shared.impl import Implementation
from testbed.node import Node
from tests.helpers import StartWorker, impl_params, wait_for_finished

# The tutorial's two programs as published (RabbitMQ tutorials, python/new_task.py and
# python/worker.py), pointed at the private node: only the connection parameters differ.
NEW_TASK = """
import os
import sys

import pika

connection = pika.BlockingConnection(pika.URLParameters(os.environ["TUTORIAL_URL"]))
channel = connection.channel()

channel.queue_declare(queue="task_queue", durable=True, arguments={"x-queue-type": "quorum"})

message = " ".join(sys.argv[1:]) or "Hello World!"
channel.basic_publish(
    exchange="",
    routing_key="task_queue",
    body=message,
    properties=pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
    ),
)
print(f" [x] Sent {message}")

connection.close()
"""

WORKER = """
import os
import time

import pika

connection = pika.BlockingConnection(pika.URLParameters(os.environ["TUTORIAL_URL"]))
channel = connection.channel()

channel.queue_declare(queue="task_queue", durable=True, arguments={"x-queue-type": "quorum"})
print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)


def callback(ch, method, properties, body):
    print(f" [x] Received {body.decode()}", flush=True)
    time.sleep(body.count(b"."))
    print(" [x] Done", flush=True)
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue="task_queue", on_message_callback=callback)

channel.start_consuming()
"""

pytestmark = pytest.mark.parametrize(
    "impl", impl_params("quorum", where=lambda i: i.name == "pika"), indirect=True
)


@pytest.fixture
def tutorial(broker: Node, impl: Implementation, tmp_path: Path) -> dict[str, str]:
    """The tutorial's programs in ``tmp_path`` and their environment (the first node's URL)."""
    if impl.task_queue() != "task_queue":
        pytest.skip("MQLAB_QUEUE_PREFIX is set: the tutorial's queue name is fixed")
    (tmp_path / "new_task.py").write_text(NEW_TASK)
    (tmp_path / "worker.py").write_text(WORKER)
    return {**os.environ, "TUTORIAL_URL": broker.amqp_urls[0], "DIR": str(tmp_path)}


def _new_task(env: dict[str, str], text: str) -> None:
    sent = subprocess.run([sys.executable, f"{env['DIR']}/new_task.py", text], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert sent.returncode == 0 and f" [x] Sent {text}" in sent.stdout, sent.stderr


def _parks_what_it_cannot_process(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """A message whose task keeps raising is parked in the dead-letter queue (the policy's
    dead-letter exchange), and a good one behind it runs."""
    start_worker(impl, "parker")
    impl.publish_work([f"keeps failing {tasks.FAIL_MARKER}"])
    good = impl.publish_work(["good."])
    wait_for_finished(journal_path, good, timeout=90)
    broker.management.wait_for_queue(impl.dead_letter_queue(), 60, ready=1)


@pytest.mark.timeout(300)
def test_the_tutorial_first_then_mqlab(
    broker: Node,
    impl: Implementation,
    tutorial: dict[str, str],
    start_worker: StartWorker,
    journal_path: str,
) -> None:
    _new_task(tutorial, "from the tutorial.")
    ids = impl.publish_work(["from mqlab."])  # declares task_queue: no 406
    start_worker(impl, "w1")
    wait_for_finished(journal_path, ids, timeout=90)
    broker.management.wait_for_queue(impl.task_queue(), 60, ready=0, unacked=0)
    _parks_what_it_cannot_process(broker, impl, start_worker, journal_path)


@pytest.mark.timeout(300)
def test_mqlab_first_then_the_tutorial(
    broker: Node,
    impl: Implementation,
    tutorial: dict[str, str],
    start_worker: StartWorker,
    journal_path: str,
) -> None:
    impl.publish_work(["from mqlab."])
    _new_task(tutorial, "from the tutorial.")  # declares task_queue: no 406
    worker = subprocess.Popen([sys.executable, "-u", f"{tutorial['DIR']}/worker.py"],
                              env=tutorial, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # fmt: skip
    try:
        assert worker.stdout is not None
        done, lines = 0, []
        deadline = time.monotonic() + 90  # readline blocks; the test's timeout bounds it too
        while done < 2 and time.monotonic() < deadline:
            line = worker.stdout.readline()
            if not line:
                break
            lines.append(line)
            done += line.startswith(" [x] Done")
        assert done == 2, "".join(lines)
    finally:
        worker.kill()
        worker.wait(timeout=30)
    _parks_what_it_cannot_process(broker, impl, start_worker, journal_path)


@pytest.mark.timeout(120)
def test_without_the_policy_the_tutorials_queue_refuses_mqlab(
    impl: Implementation, tutorial: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: no management API known, so no policy: mqlab declares the dead-letter
    x-arguments, and the queue the tutorial declared refuses them (406)."""
    monkeypatch.delenv("MQLAB_MANAGEMENT_URL")
    _new_task(tutorial, "from the tutorial.")
    with pytest.raises(QueueMismatch, match="x-dead-letter-exchange"):
        impl.publish_work(["from mqlab."])
