"""Tutorial 2 producer: put work messages on the durable ``celery.task_queue``.

    python -m celery_impl.new_task "A task...."           # one message, four units of work
    python -m celery_impl.new_task "quick." --count 100   # one hundred messages

Each message is a Celery task message (``celery_impl.work``) whose task id is the contract's
message_id. It is persistent (``delivery_mode=2``), published with ``mandatory`` under publisher
confirms (``confirm_publish``), so the program fails loudly if the broker cannot route or store
it (RabbitMQ docs, "Consumer Acknowledgements and Publisher Confirms"). The producer itself is
:class:`celery_impl.producer.Producer`.
"""

from __future__ import annotations

from celery_impl.producer import Producer
from shared import cli


def main() -> int:
    bodies = cli.new_task_bodies("python -m celery_impl.new_task", __doc__)  # body... [--count N]
    # Connect, declare the durable queue (and its dead-letter queue), confirm each message.
    with Producer() as producer:
        sent = producer.publish_all(bodies)
    cli.print_sent(bodies, sent)
    return 0


if __name__ == "__main__":
    cli.run(main)
