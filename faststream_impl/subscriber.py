"""The worker's FastStream app: its subscriber (the callback) and its start and stop lines,
built once for both commands, ``python -m faststream_impl.worker`` (:mod:`faststream_impl.worker`,
which describes the settings) and ``faststream run faststream_impl.app:app``
(:mod:`faststream_impl.app`).
"""

from __future__ import annotations

import argparse
import asyncio

from aio_pika import IncomingMessage
from faststream import AckPolicy, FastStream
from faststream.exceptions import RejectMessage
from faststream.message import StreamMessage
from faststream.rabbit import Channel

from faststream_impl.broker import (
    connect,
    connected_node,
    dead_letter_queue,
    declare,
    make_broker,
    task_queue,
    work_queue,
)
from faststream_impl.consumer import (
    GRACEFUL_TIMEOUT,
    GiveUp,
    Slots,
    flush,
    on_channel_close,
    say,
    watch_connection,
)
from shared import cli, poison, queues, settings, tasks
from shared.contract import published_at_from
from shared.journal import JournalWriter


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The worker's options (:func:`shared.cli.worker_parser` plus ``--ack-first`` and
    ``--graceful-timeout``), for the program ``prog`` described by ``description``."""
    parser = cli.worker_parser(prog, description)
    parser.add_argument(
        "--ack-first",
        action="store_true",
        help="ack on delivery (AckPolicy.ACK_FIRST; loses the message in hand if the worker dies)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=GRACEFUL_TIMEOUT,
        help="seconds a stopping worker waits for the tasks in hand (FastStream's "
        "graceful_timeout; its default is 15)",
    )
    return parser


def build(args: argparse.Namespace, give_up: GiveUp | None = None) -> FastStream:
    """The worker as a FastStream app, from the parsed options; ``give_up`` stops it when its
    connection cannot come back."""
    s = settings.load()
    journal = JournalWriter(s.journal, impl="faststream", worker=args.name)
    queue = task_queue()
    slots = Slots(args.concurrency, args.name)
    on_close, on_reconnected = watch_connection(args.name)

    broker = make_broker(
        channel=Channel(prefetch_count=cli.total_prefetch(args.prefetch, args.concurrency) or None),
        graceful_timeout=args.graceful_timeout,
        on_close=[on_close],
        on_reconnected=[on_reconnected],
        on_give_up=give_up,
        apply_types=False,  # no FastDepends/pydantic validation: the body reaches us as bytes
    )
    ack_policy = AckPolicy.ACK_FIRST if args.ack_first else AckPolicy.REJECT_ON_ERROR

    async def raw_body(message: StreamMessage[IncomingMessage]) -> bytes:
        return message.body  # no decoding by content type: undecodable bodies are ours to park

    # A message's own fields steer nothing: no_reply=True turns off FastStream's RPC reply (it
    # would publish the handler's result to the message's reply_to, a queue or "queue|exchange"
    # of the sender's choosing), and raw_body decodes no content type.
    @broker.subscriber(work_queue(queue), ack_policy=ack_policy, decoder=raw_body, no_reply=True)
    async def callback(body: bytes) -> None:
        """Run one message's task on a slot thread; the ack follows when this returns. A
        processing fault parks the message; it never ends the worker."""
        message: StreamMessage[IncomingMessage] = broker.context.get_local("message")
        try:
            await slots.run(process, body, message.raw_message)
        except Exception as e:
            parked_in = None if args.ack_first else queues.dead_letter_queue(queue)
            poison.report(message.message_id, parked_in, poison.describe(e))
            raise RejectMessage(requeue=False) from e  # dead-lettered to <queue>.dead

    def process(body: bytes, raw: IncomingMessage) -> None:
        """Run one message's task; raise whatever should park it (:mod:`shared.poison`)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise poison.Unprocessable("the body is not UTF-8 text") from e

        def once() -> None:
            with journal.run(
                message_id=raw.message_id or "",
                task="work",
                redelivered=bool(raw.redelivered),
                published_at=published_at_from(
                    dict(raw.headers), raw.timestamp.timestamp() if raw.timestamp else None
                ),
            ):
                tasks.work(text, s.dot_seconds, args.slowdown)

        try:
            poison.run_attempts(once)  # a task that raises: MAX_ATTEMPTS executions, then parked
        finally:
            flush()

    app = FastStream(broker, logger=None)
    if give_up is not None:
        give_up.app = app

    @app.on_startup
    async def connected() -> None:
        await connect(broker)  # the first connection fails fast with a clear error
        await declare(broker, dead_letter_queue(queue), work_queue(queue))  # durable=True
        say(f" [*] {args.name} connected to {connected_node(broker)}")

    @app.after_startup
    async def consuming() -> None:
        if broker._channel is not None:  # the default channel the subscriber consumes on
            broker._channel.close_callbacks.add(on_channel_close(args.name))
        say(f" [*] {args.name} waiting for messages on '{queue}'. To exit press CTRL+C")

    @app.after_shutdown
    async def stopped() -> None:
        await asyncio.get_running_loop().run_in_executor(None, slots.close)
        say(f" [*] {args.name} stopped")

    return app
