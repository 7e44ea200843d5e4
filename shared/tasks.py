"""The task catalogue: plain functions, no broker code.

These are the two programs of the RabbitMQ tutorials, as functions every implementation wraps:

* :func:`hello` — tutorial 1 ("Hello World"): print what was received.
* :func:`work` — tutorial 2 ("Work Queues"): pretend to work one unit per ``.`` in the body.

Body markers drive every implementation into CPU-bound work and into failure the same way,
through the one ``work`` task they all run (:func:`check_markers`, :func:`cpu`):

* ``*`` — one unit of CPU-bound work (~20 ms of pure Python on this project's 2-core machine).
* ``[fail]`` — the task raises :class:`TaskFailed`, every time (a task that keeps raising).
* ``[crash]`` — the task SIGKILLs its own process, every time (a message that kills its worker).
"""

from __future__ import annotations

import os
import signal
import time

CPU_MARKER = "*"
"""One unit of CPU-bound work (:func:`cpu`) per occurrence in a ``work`` body."""
FAIL_MARKER = "[fail]"
"""A ``work`` body containing this raises :class:`TaskFailed` every time it runs."""
CRASH_MARKER = "[crash]"
"""A ``work`` body containing this SIGKILLs the process running it, every time it runs."""

CPU_UNIT_ITERATIONS = 250_000
"""Loop iterations of one CPU unit: ~20 ms of pure Python (CPython 3.11, this machine)."""


class TaskFailed(Exception):
    """Raised by a task asked to fail (:data:`FAIL_MARKER`): the failure of the task itself,
    as opposed to a message that cannot be processed."""


def cpu(units: int) -> int:
    """Burn ``units`` units of CPU in pure Python (holds the GIL; no sleeping, no I/O).

    Parameters:
        units: units of work, :data:`CPU_UNIT_ITERATIONS` loop iterations each (~20 ms).

    Returns:
        A checksum of the loop, so the work cannot be optimised away.
    """
    x = 0
    for i in range(units * CPU_UNIT_ITERATIONS):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def check_markers(body: str) -> None:
    """Act on the failure markers of ``body``: SIGKILL this process for :data:`CRASH_MARKER`,
    raise for :data:`FAIL_MARKER`; nothing for any other body.

    Raises:
        TaskFailed: ``body`` contains :data:`FAIL_MARKER`.
    """
    if CRASH_MARKER in body:
        os.kill(os.getpid(), signal.SIGKILL)
    if FAIL_MARKER in body:
        raise TaskFailed(f"task asked to fail ({FAIL_MARKER} in the body)")


def hello(text: str) -> str:
    """Print `` [x] Received <text>`` like the tutorial's receiver, and return that line.

    Parameters:
        text: the message text, any Unicode (may be empty).
    """
    line = f" [x] Received {text}"
    print(line, flush=True)
    return line


def work_seconds(body: str, dot_seconds: float, slowdown: float = 1.0) -> float:
    """Seconds of work for ``body``: one ``dot_seconds`` unit per ``.``, times ``slowdown``."""
    return body.count(".") * dot_seconds * slowdown


def work(body: str, dot_seconds: float = 1.0, slowdown: float = 1.0) -> float:
    """Do tutorial 2's fake work: print `` [x] Received <body>``, sleep one unit per ``.`` in
    ``body`` (and burn one CPU unit per ``*``; fail or crash on the markers of
    :func:`check_markers`), print `` [x] Done`` (the tutorial's worker lines, the same in every
    implementation; not flushed: each worker decides how its stdout is buffered).

    Parameters:
        body: the task text; ``"Hello..."`` is three units of work.
        dot_seconds: seconds per unit (``MQLAB_DOT_SECONDS``; the tutorial uses 1 s).
        slowdown: factor for this worker (a slow worker in the fair-dispatch demo uses 4).

    Returns:
        The seconds slept.

    Raises:
        TaskFailed: the body asks for it (:data:`FAIL_MARKER`).
    """
    print(f" [x] Received {body}")
    check_markers(body)
    cpu(body.count(CPU_MARKER))
    seconds = work_seconds(body, dot_seconds, slowdown)
    if seconds > 0:
        time.sleep(seconds)
    print(" [x] Done")
    return seconds
