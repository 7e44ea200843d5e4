"""Tutorial 2 producer: put work messages on the durable ``faststream.task_queue``.

    python -m faststream_impl.new_task "A task...."           # one message, four units of work
    python -m faststream_impl.new_task "quick." --count 100   # one hundred messages

Every message is persistent (FastStream's ``persist=True``) and published ``mandatory`` under
publisher confirms (``Channel(publisher_confirms=True, on_return_raises=True)``), so the program
fails loudly if the broker cannot route or store it (:mod:`faststream_impl.producer`).
"""

from __future__ import annotations

from faststream_impl.producer import publish
from shared import cli


def main() -> int:
    return cli.new_task_main("python -m faststream_impl.new_task", __doc__, publish)


if __name__ == "__main__":
    cli.run(main)
