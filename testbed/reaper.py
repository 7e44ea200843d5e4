"""A watchdog process that kills what we started if we die without cleaning up.

Brokers and workers are started in their own sessions (process groups) so a test can SIGKILL a
whole worker (Celery's main process and its pool children together). The price is that a
Ctrl+C or SIGKILL of the parent would leave them running. The reaper closes that gap: the
parent keeps a pipe to it and registers each process group (``+PGID``) and scratch directory
(``+dir PATH``); when the pipe reaches end-of-file, whatever the cause of the parent's death, the
reaper SIGKILLs every registered group and removes every registered directory.

Run as ``python -m testbed.reaper``; use it through :func:`register` / :func:`unregister`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading

_lock = threading.Lock()
_proc: subprocess.Popen[str] | None = None


def _send(line: str) -> None:
    global _proc
    with _lock:
        if _proc is None or _proc.poll() is not None:
            _proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.reaper"],
                stdin=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        assert _proc.stdin is not None
        _proc.stdin.write(line + "\n")
        _proc.stdin.flush()


def register(pgid: int) -> None:
    """Kill process group ``pgid`` with SIGKILL if this process dies first."""
    _send(f"+{pgid}")


def unregister(pgid: int) -> None:
    """Forget process group ``pgid`` (it was stopped normally)."""
    _send(f"-{pgid}")


def register_dir(path: str) -> None:
    """Remove directory ``path`` if this process dies first."""
    _send(f"+dir {path}")


def unregister_dir(path: str) -> None:
    """Forget directory ``path``."""
    _send(f"-dir {path}")


def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    dirs: set[str] = set()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("+dir "):
            dirs.add(line[5:])
        elif line.startswith("-dir "):
            dirs.discard(line[5:])
        elif line.startswith("+"):
            groups.add(int(line[1:]))
        elif line.startswith("-"):
            groups.discard(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    _main()
