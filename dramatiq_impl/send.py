"""Tutorial 1 producer: send one message to the ``dramatiq.hello`` queue.

python -m dramatiq_impl.send "Hello World!"

Unlike the tutorial's transient hello message, Dramatiq publishes every message persistent.
"""

from __future__ import annotations

import sys

from dramatiq.errors import BrokerConnectionError

from dramatiq_impl import actors
from dramatiq_impl.settings import connect, hello_queue, make_broker, translate
from shared import cli, settings


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Send ``text`` to the ``hello`` actor under publisher confirms; return its message_id.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, 406 on declare,
            unroutable or nacked publish.
    """
    queue = hello_queue()
    broker = make_broker(amqp_url)
    try:
        connect(broker, queue)
        try:
            message = broker.enqueue(actors.hello.message(text).copy(queue_name=queue))
        except BrokerConnectionError as e:
            raise translate(e, broker, queue) from e
        return message.message_id
    finally:
        broker.close()


def main() -> int:
    text = " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "Hello World!"
    send(text)
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}")
    print(f" [x] Sent {text}")
    return 0


if __name__ == "__main__":
    cli.run(main)
