"""Small readers of the journal for assertions (no framework code)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterable

from shared import journal
from shared.impl import Command
from shared.journal import Execution
from testbed.process import wait_until


def journal_rows(journal_path: str) -> list[Execution]:
    """Every execution recorded so far."""
    return journal.read(journal_path)


def wait_for_finished(journal_path: str, ids: Iterable[str], timeout: float) -> list[Execution]:
    """Wait until every message_id in ``ids`` has a finished execution; return all rows.

    Raises:
        TimeoutError: some ids were not finished in time (the message says how many).
    """
    wanted = set(ids)
    missing: list[int] = [len(wanted)]

    def done() -> bool:
        finished = {e.message_id for e in journal.read(journal_path) if e.finished}
        missing[0] = len(wanted - finished)
        return missing[0] == 0

    try:
        wait_until(done, timeout, interval=0.05, what="every message to be executed")
    except TimeoutError as e:
        raise TimeoutError(f"{e}: {missing[0]} of {len(wanted)} not finished") from None
    return journal.read(journal_path)


def finished_by_worker(rows: Iterable[Execution]) -> Counter[str]:
    """How many finished executions each worker recorded."""
    return Counter(e.worker for e in rows if e.finished)


def executions_per_message(rows: Iterable[Execution]) -> Counter[str]:
    """How many executions (started) each message_id had."""
    return Counter(e.message_id for e in rows)


def run_to_end(
    command: Command, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (plus ``env``) to its end in its own process group.

    Raises:
        AssertionError: it did not exit within ``timeout`` seconds ("within seconds" is the
            promise for bad input); the whole group, forked children included, is killed first.
    """
    proc = subprocess.Popen(
        list(command.argv),
        env={**os.environ, **command.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{command.argv} still running after {timeout} s:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
