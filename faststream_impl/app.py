"""The worker for FastStream's own command, configured from the environment only:

    faststream run faststream_impl.app:app

is ``python -m faststream_impl.worker`` with its options from ``MQLAB_CONCURRENCY``,
``MQLAB_PREFETCH``, ``MQLAB_SLOWDOWN`` and ``MQLAB_WORKER_NAME``. Do not add FastStream's
``--workers N`` (N processes, each one worker: use ``MQLAB_CONCURRENCY`` for slots).
"""

from __future__ import annotations

from faststream_impl.subscriber import build, parser
from shared import cli, settings
from shared.errors import UsageError

with cli.one_line_errors():  # a bad setting: one line and its exit code, as in the worker
    cli.check_journal(settings.load().journal)  # once at start, as the worker does
    app = build(parser("faststream run faststream_impl.app:app", __doc__).parse_args([]))
    """The worker app (:func:`faststream_impl.subscriber.build`)."""

if __name__ == "__main__":
    with cli.one_line_errors():
        raise UsageError("run it with: faststream run faststream_impl.app:app")
