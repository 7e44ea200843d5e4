"""Tutorial 1 producer: send one ``celery_impl.hello`` message to the ``celery.hello`` queue.

python -m celery_impl.send "Hello World!"
"""

from __future__ import annotations

from celery_impl import tasks
from celery_impl.broker import hello_queue
from celery_impl.producer import Producer
from shared import cli


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Publish ``text`` to the hello queue with publisher confirms; return its message_id.

    The message is transient, as in tutorial 1 (its durable queue keeps it only while the broker
    runs).

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions, 406
            on declare, unroutable, nacked or blocked publish.
    """
    with Producer(amqp_url, queue=hello_queue(), durable=False, task=tasks.hello) as producer:
        return producer.publish(text).message_id


def main() -> int:
    return cli.send_main(send)


if __name__ == "__main__":
    cli.run(main)
