"""Tutorial 1 producer: send one message to the ``hello`` queue.

python -m raw_pika.send "Hello World!"
"""

from __future__ import annotations

import sys

from raw_pika.new_task import properties, publish_confirmed
from raw_pika.settings import connect, declare_hello_queue, hello_queue
from shared import cli
from shared.contract import TRANSIENT, Envelope


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Publish ``text`` to the hello queue with publisher confirms; return its message_id.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, unroutable or
            nacked publish.
    """
    connection = connect(amqp_url)
    channel = connection.channel()
    channel.confirm_delivery()
    queue = hello_queue()
    declare_hello_queue(channel, queue)

    envelope = Envelope()
    publish_confirmed(channel, queue, text, properties(envelope, TRANSIENT))
    connection.close()
    return envelope.message_id


def main() -> int:
    text = " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "Hello World!"
    send(text)
    print(f" [x] Sent {text}")
    return 0


if __name__ == "__main__":
    cli.run(main)
