"""Tutorial 1 producer: send one ``celery_impl.hello`` message to the ``celery.hello`` queue.

python -m celery_impl.send "Hello World!"
"""

from __future__ import annotations

import sys

from celery_impl import tasks
from celery_impl.new_task import publish_confirmed
from celery_impl.settings import app, connect, declare, hello_queue, hello_queue_entity
from shared import cli
from shared.contract import TRANSIENT, Envelope


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Publish ``text`` to the hello queue with publisher confirms; return its message_id.

    The message is transient, as in tutorial 1 (its durable queue keeps it only while the broker
    runs).

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials, 406 on declare,
            unroutable or nacked publish.
    """
    queue = hello_queue()
    envelope = Envelope()
    with connect(amqp_url) as conn:
        declare(conn, hello_queue_entity())
        with conn.channel() as channel:
            producer = app.amqp.Producer(channel)
            publish_confirmed(tasks.hello, producer, queue, (text,), envelope, TRANSIENT)
    return envelope.message_id


def main() -> int:
    text = " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "Hello World!"
    send(text)
    print(f" [x] Sent {text}")
    return 0


if __name__ == "__main__":
    cli.run(main)
