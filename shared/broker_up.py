"""The record ``mqlab broker up`` leaves behind, so every program finds the node it started.

``mqlab broker up`` writes ``<tmp>/mqlab-<uid>/<checkout>/broker.json`` (its pid, its process
start time and the node's URLs, the password included) and removes it on the way down.
``<checkout>`` names this copy of mqlab (its directory name and a hash of its path), so two
checkouts of one user never share, or stop, each other's node.
:func:`read` returns it while that process is alive, and
:func:`shared.settings.load` uses its AMQP URL when ``AMQP_URL`` is not set, so the
implementations' programs talk to the private node rather than to a system broker on 5672.

A record is trusted only when it is this user's own (see :func:`private_dir` and :func:`read`):

* both directories must be real directories (not symlinks) owned by this user that nobody
  else can write to, else :class:`RecordUnsafe` says why; another local user who created
  ``<tmp>/mqlab-<uid>`` first cannot feed us a URL or a pid. They are made mode 0700 (one an
  older mqlab left at 0755 is closed to others on first use), and the record itself is 0600;
* its pid must be this user's ``mqlab broker up`` process that started when the record says
  (psutil: uids, command line, create time), so a stale record whose pid was reused, or a pid
  the user cannot inspect or signal, is treated as gone, never signalled.

One node per record: a ``broker up`` holds an exclusive lock on ``broker.lock`` beside the
record from before it starts a node until it exits (:func:`claim`), so a second one, started at
the same moment, finds the node already starting instead of starting another that the record
would not name (``broker down`` would leave it running, invisible to ``status``).

Written and read here only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from shared.errors import MqlabError
from shared.exit_codes import ExitCode

CHECKOUT = Path(__file__).resolve().parent.parent
"""The copy of mqlab this module belongs to."""


class RecordUnsafe(MqlabError):
    """The directory of the ``broker up`` record is not this user's private directory."""

    exit_code = ExitCode.CONFIG


def _user_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"mqlab-{os.getuid()}"


def state_file() -> Path:
    """Where ``mqlab broker up`` records its node: per user and per checkout, in the temp dir."""
    key = hashlib.sha256(str(CHECKOUT).encode()).hexdigest()[:10]
    return _user_dir() / f"{CHECKOUT.name}-{key}" / "broker.json"


LOCK_FD_ENV = "MQLAB_BROKER_UP_LOCK_FD"
"""The lock's file descriptor that ``broker up --detach`` hands to the background ``broker up``
it starts (inherited, so the lock is held without a gap between the two processes)."""


def claim() -> int | None:
    """Take the lock of this checkout's ``broker up`` (``flock``, exclusive, not waiting) and
    return its file descriptor, held until it is closed or this process exits; ``None`` if
    another ``broker up`` holds it (its node is starting or running). An inherited descriptor
    (:data:`LOCK_FD_ENV`) is already the lock: it is returned as it is.

    Raises:
        RecordUnsafe: the record's directory is not this user's private directory.
    """
    inherited = os.environ.pop(LOCK_FD_ENV, None)
    if inherited is not None and inherited.isdigit():
        return int(inherited)
    directory = private_dir(create=True)
    assert directory is not None
    fd = os.open(directory / "broker.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def log_file() -> Path:
    """Where ``mqlab broker up --detach`` sends the background process's output (its
    directory is created: the first ``--detach`` of a checkout failed without it)."""
    path = state_file().with_name("broker.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_private(path: Path) -> None:
    """Check that ``path`` is a directory only this user can use (mode 0700).

    Raises:
        RecordUnsafe: a symlink, not a directory, owned by another user, or writable by group
            or others (the message says which, and what to do). A directory of ours that
            others may only read or enter is closed to them (chmod 0700) instead.
    """
    info = os.lstat(path)
    why = None
    if stat.S_ISLNK(info.st_mode):
        why = "it is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        why = "it is not a directory"
    elif info.st_uid != os.getuid():
        why = f"it belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    elif info.st_mode & 0o022:
        why = (
            f"its mode is {stat.S_IMODE(info.st_mode):04o}: others can write to it, so a "
            "record there may not be yours"
        )
    elif info.st_mode & 0o077:
        # Ours and writable by us only (an older mqlab made it 0755): nobody else can have
        # put anything in it, so close it to others and go on.
        os.chmod(path, 0o700)
    if why:
        raise RecordUnsafe(
            f"refusing to use the 'mqlab broker up' record in {path}: {why}; remove it (or set "
            "TMPDIR elsewhere), or set AMQP_URL"
        )


def private_dir(create: bool) -> Path | None:
    """The record's directory, checked with :func:`check_private` (and created 0700 with
    ``create``); ``None`` if it does not exist and ``create`` is false.

    Raises:
        RecordUnsafe: it, or ``<tmp>/mqlab-<uid>``, is not this user's private directory.
    """
    directory = state_file().parent
    for path in (directory.parent, directory):
        if create:
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
        elif not os.path.lexists(path):
            return None
        check_private(path)
    return directory


def _ours(state: dict[str, Any]) -> bool:
    """Whether ``state["pid"]`` is this user's ``mqlab broker up`` started at
    ``state["started"]`` (psutil; any doubt, including a process we may not inspect, means no).
    """
    try:
        process = psutil.Process(int(state["pid"]))
        if process.uids().real != os.getuid():
            return False
        argv = process.cmdline()
        if abs(process.create_time() - float(state["started"])) > 1.0:
            return False
    except (psutil.Error, ValueError, KeyError, TypeError):
        return False
    return "broker" in argv and "up" in argv and any("lab" in a or "mqlab" in a for a in argv)


@contextmanager
def recorded(amqp_url: str, management_url: str, **extra: Any) -> Iterator[Path]:
    """Write the record for this process's node (or cluster: ``amqp_url`` lists every node,
    ``extra`` holds ``nodes``), readable by this user only, for the duration of a ``with``
    block.

    Raises:
        RecordUnsafe: the record's directory is not this user's private directory.
    """
    directory = private_dir(create=True)
    assert directory is not None
    path = state_file()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "pid": os.getpid(),
                "started": psutil.Process().create_time(),
                "checkout": str(CHECKOUT),
                "amqp_url": amqp_url,
                "management_url": management_url,
                **extra,
            },
            out,
        )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def read() -> dict[str, Any] | None:
    """The running ``broker up``'s record (``pid``, ``started``, ``amqp_url``,
    ``management_url``), or ``None``; a record whose process is gone, or is not this user's
    ``broker up`` any more (pid reused), is removed.

    Raises:
        RecordUnsafe: the record's directory is not this user's private directory.
    """
    if private_dir(create=False) is None:
        return None
    path = state_file()
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        path.unlink(missing_ok=True)
        return None
    if not isinstance(state, dict) or not _ours(state):
        path.unlink(missing_ok=True)
        return None
    return state


def amqp_url() -> str | None:
    """The AMQP URL of the node ``mqlab broker up`` is running, if any.

    Raises:
        RecordUnsafe: the record's directory is not this user's private directory.
    """
    state = read()
    return str(state["amqp_url"]) if state else None
