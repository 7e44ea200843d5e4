"""The task catalogue: plain functions, no broker code.

These are the two programs of the RabbitMQ tutorials, as functions every implementation wraps:

* :func:`hello` — tutorial 1 ("Hello World"): print what was received.
* :func:`work` — tutorial 2 ("Work Queues"): pretend to work one unit per ``.`` in the body.
"""

from __future__ import annotations

import time


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
    ``body``, print `` [x] Done`` (the tutorial's worker lines, the same in every implementation;
    not flushed: each worker decides how its stdout is buffered).

    Parameters:
        body: the task text; ``"Hello..."`` is three units of work.
        dot_seconds: seconds per unit (``MQLAB_DOT_SECONDS``; the tutorial uses 1 s).
        slowdown: factor for this worker (a slow worker in the fair-dispatch demo uses 4).

    Returns:
        The seconds slept.
    """
    print(f" [x] Received {body}")
    seconds = work_seconds(body, dot_seconds, slowdown)
    if seconds > 0:
        time.sleep(seconds)
    print(" [x] Done")
    return seconds
