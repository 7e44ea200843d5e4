"""pika-only cases: a body that is not text does not wedge the worker or cost other messages;
reconnects that never get as far as consuming are bounded."""

from __future__ import annotations

import signal
import threading
import time

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from shared.errors import MqlabError
from shared.pika_connection import Connected
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import IMPLEMENTATIONS, StartWorker, wait_for_finished


@pytest.mark.timeout(60)
def test_malformed_body_is_rejected_and_the_worker_goes_on(
    broker: Node, start_worker: StartWorker, journal_path: str
) -> None:
    impl = IMPLEMENTATIONS["pika"]
    worker = start_worker(impl, "w1")
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    connection.channel().basic_publish("", impl.task_queue(), b"\xff\xfe not utf-8")
    connection.close()
    ids = impl.publish_work(["after the bad one."] * 3)

    wait_for_finished(journal_path, ids, timeout=30)
    assert worker.alive()
    assert "the body is not UTF-8 text" in worker.output()
    broker.management.wait_for_queue(impl.dead_letter_queue(), 30, ready=1)  # parked, not dropped


CLOSED_BEFORE_CONSUMING = (
    "INTERNAL_ERROR - Cannot declare quorum queue 'mqlabtest.reconnect-bound' in vhost '/': "
    "cluster_not_formed"
)
"""What RabbitMQ closes the connection with, about 15 s after a worker declares a new quorum
queue on a cluster without a majority of its nodes (541)."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("always", [True, False], ids=["closed-every-time", "control-once"])
def test_reconnects_that_never_reach_consuming_are_bounded(broker: Node, always: bool) -> None:
    """A connection that opens and is closed again before its consumer is registered (the 541
    above, here raised by the worker's own queue setup after closing the real connection) does
    not restart the worker's ``MQLAB_RECONNECT_SECONDS`` count: the worker gives up with one
    error naming the broker's reply. Control: closed once, it consumes on the next connection."""
    from raw_pika.consumer import Consumer

    queue = "mqlabtest.reconnect-bound"
    setups: list[float] = []

    def setup(channel: BlockingChannel, params: object) -> None:
        setups.append(time.monotonic())
        if always or len(setups) == 1:
            channel.connection.close()
            raise pika.exceptions.ConnectionClosedByBroker(541, CLOSED_BEFORE_CONSUMING)
        channel.queue_declare(queue, auto_delete=True)

    def connect() -> Connected:
        params = [pika.URLParameters(broker.amqp_url)]
        return Connected(pika.BlockingConnection(params), params)

    consumer = Consumer(
        connect, setup, lambda delivery: None,
        queue=queue, slots=1, auto_ack=True, name="w1", reconnect_seconds=1.0,
    )  # fmt: skip
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if always:
            with pytest.raises(MqlabError) as raised:
                consumer.run(connect())
            gave_up_at = time.monotonic()
            assert "541" in str(raised.value) and "gave up after 1 s" in str(raised.value)
            assert "\n" not in str(raised.value)
            # it did retry, and gave up only once 1 s had passed since the first loss (the last
            # setup itself may come just before that second is over)
            assert len(setups) >= 2 and gave_up_at - setups[0] >= 1.0
        else:

            def stop_once_consuming() -> None:
                wait_until(lambda: consumer.consuming, 30, what="the consumer")
                consumer.stopping.set()

            stopper = threading.Thread(target=stop_once_consuming, daemon=True)
            stopper.start()
            assert consumer.run(connect()) == 0
            assert len(setups) == 2
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
