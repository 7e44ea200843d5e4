"""Tutorial 1 producer: send one message to the ``hello`` queue.

python -m raw_pika.send "Hello World!"
"""

from __future__ import annotations

from raw_pika.broker import hello_queue
from raw_pika.producer import Producer
from shared import cli


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Publish ``text`` (transient) to the hello queue with publisher confirms; return its
    message_id.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions,
            unroutable, nacked or blocked publish.
    """
    with Producer(amqp_url, queue=hello_queue(), durable=False) as producer:
        return producer.publish(text).message_id


def main() -> int:
    return cli.send_main(send)


if __name__ == "__main__":
    cli.run(main)
