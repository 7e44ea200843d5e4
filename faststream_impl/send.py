"""Tutorial 1 producer: send one message to the ``faststream.hello`` queue.

python -m faststream_impl.send "Hello World!"
"""

from __future__ import annotations

from faststream_impl.broker import hello_queue
from faststream_impl.producer import Producer
from shared import cli


def send(text: str, *, amqp_url: str | None = None) -> str:
    """Publish ``text`` (transient) to the hello queue with publisher confirms; return its
    message_id.

    Raises:
        shared.errors.MqlabError: unreachable broker, refused credentials or permissions,
            unroutable or nacked publish.
    """
    with Producer(amqp_url, queue=hello_queue(), durable=False) as producer:
        return producer.publish(text).message_id


def main() -> int:
    return cli.send_main(send, "python -m faststream_impl.send", __doc__)


if __name__ == "__main__":
    cli.run(main)
