"""The execution journal: one SQLite row per task execution, shared by all worker processes.

Workers of every implementation write here when ``MQLAB_JOURNAL`` names a file; the tests and
the lab read it to decide what was delivered, redelivered, lost or executed twice.

Crash safety comes from SQLite itself: the database is in WAL mode and every write is its own
committed transaction, so a worker that is SIGKILLed loses at most the row it was writing, never
an earlier one (SQLite docs, "Write-Ahead Logging" and "Atomic Commit"). ``synchronous=OFF``
is durable against a process crash, which is what the tests inflict: a committed write is in
the operating system's hands and survives the process (SQLite docs, "PRAGMA synchronous": with
OFF "the database will be safe if the application crashes"); it is not durable against an OS
crash or power loss, which they do not inflict. ``NORMAL`` would fsync at every WAL checkpoint
(every ~1000 pages, i.e. every few hundred executions), which tripled the journal's cost per
execution (~160 us instead of ~50 us) and showed up in the lab's throughput figures.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id           INTEGER PRIMARY KEY,  -- no AUTOINCREMENT: it costs a sqlite_sequence write per row
    message_id   TEXT NOT NULL,
    task         TEXT NOT NULL,
    impl         TEXT NOT NULL,
    worker       TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    redelivered  INTEGER NOT NULL,
    published_at REAL NOT NULL,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    outcome      TEXT
);
"""

OK = "ok"
"""Outcome of an execution that returned normally."""
ERROR = "error"
"""Outcome of an execution that raised."""


@dataclass(frozen=True)
class Execution:
    """One row of the journal.

    Attributes:
        message_id: the message's ``message_id`` property (UUID string).
        task: task name from the catalogue (``"work"``, ``"hello"``).
        impl: implementation id (``"pika"``, ``"celery"``, ``"dramatiq"``).
        worker: worker name (``MQLAB_WORKER_NAME``).
        pid: OS process id that ran the task.
        redelivered: the AMQP ``redelivered`` flag of the delivery.
        published_at: precise publish time, epoch seconds.
        started_at: when the task function was entered, epoch seconds.
        finished_at: when it returned or raised, epoch seconds; ``None`` if it never did.
        outcome: :data:`OK`, :data:`ERROR` or ``None`` if unfinished.
    """

    id: int
    message_id: str
    task: str
    impl: str
    worker: str
    pid: int
    redelivered: bool
    published_at: float
    started_at: float
    finished_at: float | None
    outcome: str | None

    @property
    def finished(self) -> bool:
        """Whether the execution ran to an end (ok or error)."""
        return self.finished_at is not None


_BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another process's lock before giving up."""


def _enable_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock.

    SQLite returns ``SQLITE_BUSY`` ("database is locked") for this pragma at once, without
    calling the busy handler, when several connections open a fresh file at the same moment;
    the connection's ``timeout`` does not cover it (SQLite docs, "Write-Ahead Logging":
    changing into WAL mode needs an exclusive lock).

    Raises:
        sqlite3.OperationalError: still locked after :data:`_BUSY_TIMEOUT` seconds, or any
            other error.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Journal:
    """An execution journal in a SQLite file (WAL mode), safe to share between processes.

    Parameters:
        path: file path; created with its table on first use.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        _enable_wal(self._conn)
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close this process's connection."""
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (workers) ------------------------------------------------------------------

    def started(
        self,
        *,
        message_id: str,
        task: str,
        impl: str,
        worker: str,
        redelivered: bool,
        published_at: float,
    ) -> int:
        """Record that this process started executing a message; return the row id."""
        cur = self._conn.execute(
            "INSERT INTO executions (message_id, task, impl, worker, pid, redelivered,"
            " published_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                task,
                impl,
                worker,
                os.getpid(),
                int(redelivered),
                published_at,
                time.time(),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finished(self, row_id: int, outcome: str = OK) -> None:
        """Record the end of execution ``row_id`` with ``outcome`` (:data:`OK`/:data:`ERROR`)."""
        self._conn.execute(
            "UPDATE executions SET finished_at = ?, outcome = ? WHERE id = ?",
            (time.time(), outcome, row_id),
        )

    # -- reading (tests, lab) -----------------------------------------------------------------

    def executions(self) -> list[Execution]:
        """Every row, in the order executions started."""
        rows = self._conn.execute(
            "SELECT id, message_id, task, impl, worker, pid, redelivered, published_at,"
            " started_at, finished_at, outcome FROM executions ORDER BY id"
        ).fetchall()
        return [
            Execution(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10])
            for r in rows
        ]

    def finished_count(self) -> int:
        """How many distinct message_ids have a finished execution.

        One aggregate query, cheap enough to poll while workers write (reading every row with
        :meth:`executions` costs ~20 us per row, which a poll loop over thousands of rows turns
        into CPU taken from the workers being measured).
        """
        row = self._conn.execute(
            "SELECT COUNT(DISTINCT message_id) FROM executions WHERE finished_at IS NOT NULL"
        ).fetchone()
        return int(row[0])


class JournalWriter:
    """What a worker holds: its identity plus a :class:`Journal`, or nothing when disabled.

    Parameters:
        path: journal path (``MQLAB_JOURNAL``) or ``None`` to record nothing.
        impl: implementation id written into every row.
        worker: worker name written into every row.
    """

    def __init__(self, path: str | None, *, impl: str, worker: str) -> None:
        self.path = path
        self.impl = impl
        self.worker = worker
        self._local = threading.local()
        self.journal  # noqa: B018  (opens it now: a bad path fails at start, not at the first task)

    @property
    def journal(self) -> Journal | None:
        """This thread's connection to the journal, or ``None`` when disabled. One per thread,
        because a SQLite connection may only be used by the thread that opened it (a worker's
        slots are threads)."""
        if self.path is None:
            return None
        journal: Journal | None = getattr(self._local, "journal", None)
        if journal is None:
            journal = self._local.journal = Journal(self.path)
        return journal

    def run(
        self,
        *,
        message_id: str,
        task: str,
        redelivered: bool,
        published_at: float,
    ) -> _Execution:
        """Context manager around one execution: writes the start row, then the outcome.

        An exception inside the block is recorded as :data:`ERROR` and re-raised.
        """
        return _Execution(self, message_id, task, redelivered, published_at)


class _Execution:
    def __init__(
        self, writer: JournalWriter, message_id: str, task: str, redelivered: bool, at: float
    ) -> None:
        self._w = writer
        self._args = (message_id, task, redelivered, at)
        self._row: int | None = None

    def __enter__(self) -> None:
        j = self._w.journal
        if j is not None:
            message_id, task, redelivered, at = self._args
            self._row = j.started(
                message_id=message_id,
                task=task,
                impl=self._w.impl,
                worker=self._w.worker,
                redelivered=redelivered,
                published_at=at,
            )

    def __exit__(self, exc_type: object, *rest: object) -> None:
        j = self._w.journal
        if j is not None and self._row is not None:
            j.finished(self._row, ERROR if exc_type else OK)


def read(path: str | os.PathLike[str]) -> list[Execution]:
    """Every execution recorded in the journal at ``path`` (empty if the file does not exist)."""
    if not os.path.exists(path):
        return []
    with closing(Journal(path)) as j:
        return j.executions()


def by_message(executions: list[Execution]) -> dict[str, list[Execution]]:
    """Group executions by message_id, each list in start order."""
    out: dict[str, list[Execution]] = {}
    for e in executions:
        out.setdefault(e.message_id, []).append(e)
    return out
