"""Child processes in their own process group: started, signalled and reaped as a whole.

A worker is killed "for real" by a signal to its process group, so a Celery worker's pool
children or a Dramatiq worker's forked processes die with their parent, as they would when a
machine loses power or the OOM killer strikes. Every group is registered with
:mod:`testbed.reaper`, so nothing outlives the program that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from shared.impl import Command
from testbed import reaper


class GroupProcess:
    """A child process leading its own process group (session).

    Parameters:
        command: what to run.
        log_path: file receiving the child's stdout and stderr, or ``None`` for a pipe
            (read it from :attr:`popen`).
        cwd: working directory (default: the current one).

    Use as a context manager: leaving the block SIGKILLs the whole group.
    """

    def __init__(
        self, command: Command, *, log_path: str | Path | None = None, cwd: str | None = None
    ) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", **command.env}
        self.command = command
        self.log_path = Path(log_path) if log_path else None
        out = open(self.log_path, "ab") if self.log_path else subprocess.PIPE  # noqa: SIM115
        self.popen = subprocess.Popen(
            list(command.argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.log_path and not isinstance(out, int):
            out.close()
        self.pid = self.popen.pid
        reaper.register(self.pid)

    def __enter__(self) -> GroupProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def alive(self) -> bool:
        """Whether the group leader is still running."""
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """The leader's pid and every descendant's (a Celery worker's pool children, say)."""
        try:
            leader = psutil.Process(self.pid)
            return [self.pid] + [c.pid for c in leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process in the group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and reap the leader."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        reaper.unregister(self.pid)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the leader only (a warm shutdown), wait up to ``timeout`` seconds.

        Returns:
            The exit code, or ``None`` if it was still running at the deadline.
        """
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the leader to exit; its code, or ``None``."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        """What the child has written to its log file so far (``""`` without a log file)."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll ``predicate()`` until it is truthy.

    Parameters:
        predicate: a callable returning a truthy value when done.
        timeout: deadline in seconds.
        interval: seconds between polls.
        what: described in the error.

    Raises:
        TimeoutError: the deadline passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)
