"""Tutorial 2 producer: put work messages on the durable ``dramatiq.task_queue``.

    python -m dramatiq_impl.new_task "A task...."           # one message, four units of work
    python -m dramatiq_impl.new_task "quick." --count 100   # one hundred messages

Each message is a ``work`` actor message: persistent (``delivery_mode=2``), ``mandatory`` and
under publisher confirms (``confirm_delivery=True``), so the program fails loudly if the broker
cannot route or store it. The producer itself, which publishes as Dramatiq's ``enqueue`` does
minus its silent retries, is :class:`dramatiq_impl.producer.Producer`.
"""

from __future__ import annotations

from dramatiq_impl.producer import Producer
from shared import cli


def main() -> int:
    bodies = cli.new_task_bodies("python -m dramatiq_impl.new_task", __doc__)  # body... [--count N]
    # Connect, declare the durable queue (and its dead-letter queue), confirm each message.
    with Producer() as producer:
        sent = producer.publish_all(bodies)
    cli.print_sent(bodies, sent)
    return 0


if __name__ == "__main__":
    cli.run(main)
