"""The record ``mqlab broker up`` leaves behind, so every program finds the node it started.

``mqlab broker up`` writes ``<tmp>/mqlab-<uid>/<checkout>/broker.json`` (its pid and the node's
URLs) and removes it on the way down. ``<checkout>`` names this copy of mqlab (its directory name
and a hash of its path), so two checkouts of one user never share, or stop, each other's node.
:func:`read` returns it while that process is alive, and
:func:`shared.settings.load` uses its AMQP URL when ``AMQP_URL`` is not set, so the
implementations' programs talk to the private node rather than to a system broker on 5672.
Written and read here only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent
"""The copy of mqlab this module belongs to."""


def state_file() -> Path:
    """Where ``mqlab broker up`` records its node: per user and per checkout, in the temp dir."""
    key = hashlib.sha256(str(CHECKOUT).encode()).hexdigest()[:10]
    return (
        Path(tempfile.gettempdir())
        / f"mqlab-{os.getuid()}"
        / f"{CHECKOUT.name}-{key}"
        / ("broker.json")
    )


def log_file() -> Path:
    """Where ``mqlab broker up --detach`` sends the background process's output."""
    return state_file().with_name("broker.log")


@contextmanager
def recorded(amqp_url: str, management_url: str, **extra: Any) -> Iterator[Path]:
    """Write the record for this process's node (or cluster: ``amqp_url`` lists every node,
    ``extra`` holds ``nodes``) for the duration of a ``with`` block."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "checkout": str(CHECKOUT),
                "amqp_url": amqp_url,
                "management_url": management_url,
                **extra,
            }
        )
    )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def read() -> dict[str, Any] | None:
    """The running ``broker up``'s record (``pid``, ``amqp_url``, ``management_url``), or
    ``None``; a record whose process is gone is removed."""
    path = state_file()
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except FileNotFoundError:
        return None
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    return state


def amqp_url() -> str | None:
    """The AMQP URL of the node ``mqlab broker up`` is running, if any."""
    state = read()
    return str(state["amqp_url"]) if state else None
