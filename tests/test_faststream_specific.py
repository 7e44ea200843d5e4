"""FastStream-specific cases: its traps, each with its negative control. The conformance suite
covers the rest through the common interface.

* Prefetch: FastStream's default ``Channel()`` sends no ``basic.qos`` (unlimited: one consumer
  takes every ready message); the worker's ``Channel(prefetch_count=1)`` holds one.
* Shutdown: FastStream waits ``graceful_timeout`` seconds for the handlers in hand, then
  cancels them. What FastStream 0.7.8 does with a cancelled handler's message (neither ack nor
  reject: RabbitMQ requeues it, it runs again, nothing is dropped), against the worker's own
  wait, under which the task in hand runs once.
* Heartbeats: blocking work inside the handler coroutine stalls the event loop, RabbitMQ drops
  the connection and the message goes back to the queue; the worker's slot threads keep it
  (``tests/test_long_tasks.py`` runs the worker side for every implementation).
* RPC replies: with ``no_reply=False`` (FastStream's default) a subscriber publishes its
  handler's result, even ``None``, to any message's ``reply_to`` (a queue, or ``queue|exchange``);
  the worker's ``no_reply=True`` publishes nothing (``tests/test_message_fields.py`` sends the
  worker itself those hostile ``reply_to`` values).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import pika
import pytest
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from shared.impl import Command, Implementation, WorkerSpec
from testbed import registry
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import (
    DOT_SECONDS,
    StartWorker,
    executions_per_message,
    journal_rows,
    wait_for_consumer,
    wait_for_finished,
)

pytestmark = pytest.mark.skipif(
    "faststream" not in registry.available(), reason="faststream_impl not importable"
)

HEARTBEAT = 2
"""Seconds: the heartbeat timeout asked for in the heartbeat trap."""


@pytest.fixture
def impl() -> Implementation:
    return registry.get("faststream")


async def _hold_without_acking(amqp_url: str, queue: str, channel: Channel, count: int) -> int:
    """Consume ``queue`` with a FastStream subscriber on ``channel`` whose handler never
    returns while ``count`` messages are published; return how many it received."""
    broker = RabbitBroker(amqp_url, default_channel=channel, logger=None)
    received = 0
    release = asyncio.Event()

    @broker.subscriber(RabbitQueue(queue, durable=True, auto_delete=False))
    async def handler(body: bytes) -> None:
        nonlocal received
        received += 1
        await release.wait()

    await broker.start()
    try:
        for i in range(count):
            await broker.publish(f"m{i}".encode(), queue=queue)
        await asyncio.sleep(0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and received < count:
            await asyncio.sleep(0.1)  # polling with a deadline, inside the event loop
        return received
    finally:
        release.set()
        await broker.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("channel", "held"),
    [(Channel(), 5), (Channel(prefetch_count=1), 1)],
    ids=["faststream-default-unlimited", "worker-prefetch-1"],
)
def test_default_channel_has_no_prefetch_limit(broker: Node, channel: Channel, held: int) -> None:
    """FastStream's default ``Channel()`` (``prefetch_count=None``) sets no ``basic.qos``: one
    stuck handler receives all five messages. The negative control, the worker's
    ``Channel(prefetch_count=1)``, receives one and leaves four ready for other workers."""
    queue = "mqlabtest.faststream-prefetch"
    try:
        received = asyncio.run(_hold_without_acking(broker.amqp_url, queue, channel, 5))
        assert received == held
    finally:
        broker.management.delete_queue(queue)


REPLY_VICTIM = "mqlabtest.faststream-reply-victim"
"""The queue a hostile message's ``reply_to`` names in the RPC reply probe."""


async def _consume_with_replies(broker_node: Node, queue: str, no_reply: bool, count: int) -> int:
    """Consume ``queue`` with a FastStream subscriber configured as the worker's (ack after the
    handler returns, raw body, handler returning ``None``) but for ``no_reply``, until ``count``
    messages were handled and acked (management API, fresh figures); return how many were
    handled. FastStream publishes a reply before the ack (``SubscriberUsecase.process_message``
    runs the response publishers inside the acknowledgement middleware), so once the queue has
    no unacked message every reply it makes has been published and confirmed."""
    broker = RabbitBroker(broker_node.amqp_url, logger=None)
    handled = 0

    async def raw_body(message: object) -> bytes:
        return message.body  # type: ignore[attr-defined, no-any-return]

    @broker.subscriber(
        RabbitQueue(queue, durable=True, auto_delete=False),
        ack_policy=AckPolicy.REJECT_ON_ERROR,
        decoder=raw_body,
        no_reply=no_reply,
    )
    async def handler(body: bytes) -> None:
        nonlocal handled
        handled += 1

    await broker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and handled < count:
            await asyncio.sleep(0.05)  # polling with a deadline, inside the event loop
        await asyncio.to_thread(
            broker_node.management.wait_for_queue,
            queue, 30, ready=0, unacked=0, fresh_after=time.time(),
        )  # fmt: skip
        return handled
    finally:
        await broker.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("no_reply", "replies"),
    [(False, 2), (True, 0)],
    ids=["faststream-default-replies", "worker-no-reply"],
)
def test_a_hostile_reply_to_gets_a_reply_unless_no_reply(
    broker: Node, no_reply: bool, replies: int
) -> None:
    """Two messages whose ``reply_to`` names a queue of somebody else's (plain, and FastStream's
    ``queue|exchange`` form with the default exchange), handled by a subscriber that returns
    ``None``. FastStream's default (``no_reply=False``, the negative control) publishes a reply
    for each into that queue: an empty body carrying the message's ``correlation_id``. With the
    worker's ``no_reply=True`` (``faststream_impl/subscriber.py``) the queue stays empty."""
    queue = "mqlabtest.faststream-reply-work"
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        channel.queue_declare(REPLY_VICTIM, durable=True)
        for i, reply_to in enumerate([REPLY_VICTIM, f"{REPLY_VICTIM}|"]):
            channel.basic_publish(
                "",
                queue,
                f"hostile {i}".encode(),
                pika.BasicProperties(
                    delivery_mode=2, reply_to=reply_to, correlation_id=f"hostile-{i}"
                ),
                mandatory=True,
            )
        handled = asyncio.run(_consume_with_replies(broker, queue, no_reply, 2))
        assert handled == 2
        victim = channel.queue_declare(REPLY_VICTIM, passive=True).method.message_count
        assert victim == replies
        got = [channel.basic_get(REPLY_VICTIM, auto_ack=True) for _ in range(victim)]
        assert (
            sorted(props.correlation_id for _, props, _ in got)
            == ["hostile-0", "hostile-1"][:replies]
        )
        assert {body for _, _, body in got} <= {b""}
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()
        broker.management.delete_queue(queue)
        broker.management.delete_queue(REPLY_VICTIM)


def _worker(
    impl: Implementation, broker: Node, journal_path: str, tmp_path: Path, name: str, *extra: str
) -> GroupProcess:
    spec = WorkerSpec(
        name=name, journal=journal_path, amqp_url=broker.amqp_url, dot_seconds=DOT_SECONDS
    )
    command = impl.worker_command(spec)
    proc = GroupProcess(
        Command([*command.argv, *extra], command.env), log_path=tmp_path / f"{name}.log"
    )
    wait_for_consumer(broker, impl, proc)
    return proc


@pytest.mark.timeout(120)
@pytest.mark.parametrize("graceful", [None, "1"], ids=["worker-waits", "graceful-timeout-1s"])
def test_sigterm_with_a_task_longer_than_the_graceful_timeout(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    tmp_path: Path,
    graceful: str | None,
) -> None:
    """SIGTERM during a 4 s task. The worker's own wait (``graceful_timeout`` of a day): the
    task finishes and is acked, it runs once. With ``--graceful-timeout 1`` (FastStream's
    setting; 15 s by default) FastStream cancels the handler after 1 s; 0.7.8 then neither acks
    nor rejects it, so RabbitMQ requeues the message when the channel closes: it runs again,
    redelivered, on the next worker, and nothing is parked or dropped (older FastStream releases
    rejected it without requeue: dead-lettered or lost)."""
    extra = ("--graceful-timeout", graceful) if graceful else ()
    first = _worker(impl, broker, journal_path, tmp_path, "first", *extra)
    try:
        [long_id] = impl.publish_work(["." * 40])  # 4 s
        wait_until(
            lambda: any(not e.finished for e in journal_rows(journal_path)),
            30,
            interval=0.02,
            what="the worker to start the task",
        )
        assert first.terminate(timeout=60) is not None, "the worker did not exit after SIGTERM"
    finally:
        first.kill()
    start_worker(impl, "second")
    if graceful is None:
        rows = wait_for_finished(journal_path, [long_id], timeout=30)
        broker.management.wait_for_queue(
            impl.task_queue(), 30, ready=0, unacked=0, fresh_after=time.time()
        )
        assert [(r.worker, r.outcome) for r in journal_rows(journal_path)] == [("first", "ok")]
    else:
        wait_until(
            lambda: (
                executions_per_message(journal_rows(journal_path)).get(long_id) == 2
                and all(r.finished for r in journal_rows(journal_path))
            ),
            60,
            what="the requeued message to run again",
        )
        rows = journal_rows(journal_path)
        assert [(r.worker, r.redelivered) for r in rows] == [("first", False), ("second", True)]
    dead = broker.management.queue(impl.dead_letter_queue())
    assert dead is not None and dead.ready == 0, "the message was parked"


async def _block_the_loop(amqp_url: str, queue: str, seconds: float) -> None:
    """Consume one message with a handler that blocks the event loop for ``seconds``; a
    redelivery (aio-pika reconnects by itself) is held without an ack until the broker stops."""
    broker = RabbitBroker(f"{amqp_url}?heartbeat={HEARTBEAT}", logger=None)
    done, never = asyncio.Event(), asyncio.Event()

    target = RabbitQueue(queue, durable=True, auto_delete=False)

    @broker.subscriber(target)
    async def handler(body: bytes) -> None:
        if done.is_set():
            await never.wait()
        time.sleep(seconds)  # blocking work on the event loop: no heartbeats meanwhile
        done.set()

    await broker.connect()
    await broker.declare_queue(target)
    await broker.publish(b"long", queue=queue, persist=True)  # confirmed before it is consumed
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), seconds + 30)
    finally:
        with contextlib.suppress(*CONNECTION_EXCEPTIONS):  # its connection is gone
            await broker.stop()


@pytest.mark.timeout(90)
def test_negative_control_blocking_work_in_the_handler_loses_the_connection(
    broker: Node,
) -> None:
    """The worker's trap avoided: the same long work done inside the handler coroutine. The
    event loop sends no heartbeats, RabbitMQ drops the connection, the ack cannot be sent, and
    the message is ready again for the next consumer."""
    queue = "mqlabtest.faststream-blocking-handler"
    try:
        asyncio.run(_block_the_loop(broker.amqp_url, queue, 4 * HEARTBEAT))
        wait_until(
            lambda: (q := broker.management.queue(queue)) is not None and q.ready == 1,
            30,
            what="the unacked message to return to the queue",
        )
    finally:
        broker.management.delete_queue(queue)


@pytest.mark.timeout(90)
def test_the_native_command_runs_the_same_worker(
    broker: Node, impl: Implementation, journal_path: str, tmp_path: Path
) -> None:
    """``faststream run faststream_impl.app:app`` (FastStream's own command, options from the
    environment) consumes with prefetch 1, runs each message once and stops warm on SIGTERM
    with exit code 0."""
    spec = WorkerSpec(
        name="native", journal=journal_path, amqp_url=broker.amqp_url, dot_seconds=DOT_SECONDS
    )
    faststream = str(Path(sys.executable).with_name("faststream"))
    command = Command([faststream, "run", "faststream_impl.app:app"], spec.environment())
    with GroupProcess(command, log_path=tmp_path / "native.log") as native:
        wait_for_consumer(broker, impl, native)
        [consumer] = broker.management.consumers_of(impl.task_queue(), native.pids())
        assert consumer.prefetch_count == 1
        ids = impl.publish_work(["one.", "two..", "three..."])
        rows = wait_for_finished(journal_path, ids, timeout=60)
        assert executions_per_message(rows) == {i: 1 for i in ids}
        assert {r.worker for r in rows} == {"native"}
        assert native.terminate(timeout=30) == 0, native.output()


@pytest.mark.timeout(10)
def test_only_a_channel_rabbitmq_closes_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's channel close callback says nothing about its own close (aiormq's
    ``ChannelClosed(None, None)`` on the close-ok, seen at Ctrl+C under ``faststream run``), and
    its one line about a close RabbitMQ sent (the negative control: the consumer timeout's 406).
    """
    import aiormq.exceptions

    from faststream_impl.consumer import on_channel_close

    closed = on_channel_close("w1")
    closed(object(), aiormq.exceptions.ChannelClosed(None, None))
    assert capsys.readouterr().out == ""
    closed(
        object(), aiormq.exceptions.ChannelPreconditionFailed("delivery acknowledgement timed out")
    )
    assert "RabbitMQ closed the channel" in capsys.readouterr().out
