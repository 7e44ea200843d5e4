"""Tutorial 1 producer: send one message to the ``dramatiq.hello`` queue.

python -m dramatiq_impl.send "Hello World!"

Unlike the tutorial's transient hello message, Dramatiq publishes every message persistent.
"""

from __future__ import annotations

from dramatiq_impl import actors
from dramatiq_impl.broker import hello_queue
from dramatiq_impl.producer import Producer
from shared import cli


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Send ``text`` to the ``hello`` actor under publisher confirms; return its message_id.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions, 406
            on declare, unroutable, nacked or blocked publish.
    """
    with Producer(amqp_url, queue=hello_queue(), actor=actors.hello) as producer:
        return producer.publish(text).message_id


def main() -> int:
    return cli.send_main(send)


if __name__ == "__main__":
    cli.run(main)
