"""Tutorial 2 producer: put work messages on the durable ``task_queue``.

    python -m raw_pika.new_task "A task...."           # one message, four units of work
    python -m raw_pika.new_task "quick." --count 100   # one hundred messages

Every message is persistent (``delivery_mode=2``) and published with ``mandatory`` under
publisher confirms, so the program fails loudly if the broker cannot route or store it
(RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms"). The producer itself, the
object an application keeps open, is :class:`raw_pika.producer.Producer`.
"""

from __future__ import annotations

from raw_pika.producer import Producer
from shared import cli


def main() -> int:
    bodies = cli.new_task_bodies("python -m raw_pika.new_task", __doc__)  # body... [--count N]
    # Connect, declare the durable queue (and its dead-letter queue), confirm each message.
    with Producer() as producer:
        sent = producer.publish_all(bodies)
    cli.print_sent(bodies, sent)
    return 0


if __name__ == "__main__":
    cli.run(main)
