"""pika-only cases: a body that is not text does not wedge the worker or cost other messages."""

from __future__ import annotations

import pika
import pytest

from testbed import registry
from testbed.node import Node
from tests.conftest import StartWorker
from tests.helpers import wait_for_finished


@pytest.mark.timeout(60)
def test_malformed_body_is_rejected_and_the_worker_goes_on(
    broker: Node, start_worker: StartWorker, journal_path: str
) -> None:
    impl = registry.get("pika")
    worker = start_worker(impl, "w1")
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    connection.channel().basic_publish("", impl.task_queue(), b"\xff\xfe not utf-8")
    connection.close()
    ids = impl.publish_work(["after the bad one."] * 3)

    wait_for_finished(journal_path, ids, timeout=30)
    assert worker.alive()
    assert "the body is not UTF-8 text" in worker.output()
    broker.management.wait_for_queue(impl.dead_letter_queue(), 30, ready=1)  # parked, not dropped
