"""Tutorial 1 consumer: print every message from the ``faststream.hello`` queue.

python -m faststream_impl.receive
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions
from faststream import AckPolicy, FastStream

from faststream_impl.broker import (
    connect,
    connected_node,
    declare,
    hello_queue,
    make_broker,
    plain_queue,
    run_app,
    translate,
)
from shared import cli, tasks


def main() -> int:
    cli.receive_args("python -m faststream_impl.receive", __doc__)
    broker = make_broker()

    # Tutorial 1 acknowledges on delivery (AckPolicy.ACK_FIRST); tutorial 2's worker does better.
    # no_reply=True: a message's reply_to gets no reply (FastStream's RPC), as in the worker.
    @broker.subscriber(plain_queue(hello_queue()), ack_policy=AckPolicy.ACK_FIRST, no_reply=True)
    async def callback(body: bytes) -> None:
        tasks.hello(body.decode("utf-8", errors="replace"))

    app = FastStream(broker, logger=None)

    @app.on_startup
    async def connected() -> None:
        await connect(broker)
        await declare(broker, plain_queue(hello_queue()))  # a refusal names the declare
        print(f" [*] Connected to {connected_node(broker)}", flush=True)

    @app.after_startup
    async def waiting() -> None:
        print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)

    try:
        asyncio.run(run_app(app))
    except aiormq.exceptions.AMQPError as e:  # e.g. 403 on declare or consume
        raise translate(e, None, "consume", hello_queue()) from e
    return 0


if __name__ == "__main__":
    cli.run(main)
