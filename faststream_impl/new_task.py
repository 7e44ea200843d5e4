"""Tutorial 2 producer: put work messages on the durable ``faststream.task_queue``.

    python -m faststream_impl.new_task "A task...."           # one message, four units of work
    python -m faststream_impl.new_task "quick." --count 100   # one hundred messages

Every message is persistent (FastStream's ``persist=True``) and published ``mandatory`` under
publisher confirms (``Channel(publisher_confirms=True, on_return_raises=True)``), so the program
fails loudly if the broker cannot route or store it. The producer itself, the object an
application keeps open, is :class:`faststream_impl.producer.Producer`.
"""

from __future__ import annotations

from faststream_impl.producer import Producer
from shared import cli


def main() -> int:
    bodies = cli.new_task_bodies("python -m faststream_impl.new_task", __doc__)  # [--count N]
    # Connect, declare the durable queue (and its dead-letter queue), confirm each message.
    with Producer() as producer:
        sent = producer.publish_all(bodies)
    cli.print_sent(bodies, sent)
    return 0


if __name__ == "__main__":
    cli.run(main)
