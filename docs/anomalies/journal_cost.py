"""CPU per execution of the journal's two writes (``shared/journal.py``), under SQLite settings.

    .venv/bin/python docs/anomalies/journal_cost.py [--count 4000] [--repeat 3]

Each variant writes ``--count`` executions the way a worker does (an autocommitted ``INSERT``
at the start, an autocommitted ``UPDATE`` at the finish) into a fresh WAL-mode journal in a
temporary directory, with a second connection open on it as the tests keep one; the CPU of
this process (``getrusage``, user+sys) over ``--count`` is printed per variant, variants
interleaved in each repeat. ``memory`` runs the same statements on an in-memory database: what
SQLite and the ``sqlite3`` module cost without the WAL's locks and writes.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile
import time

from shared.exit_codes import ExitCode
from shared.journal import _SCHEMA

VARIANTS = {
    "OFF (the journal's)": ["PRAGMA synchronous=OFF"],
    "NORMAL": ["PRAGMA synchronous=NORMAL"],
    "OFF, page_size 1024": ["PRAGMA page_size=1024", "PRAGMA synchronous=OFF"],
    "OFF, wal_autocheckpoint 100": ["PRAGMA synchronous=OFF", "PRAGMA wal_autocheckpoint=100"],
    "OFF, wal_autocheckpoint 10000": ["PRAGMA synchronous=OFF", "PRAGMA wal_autocheckpoint=10000"],
}
INSERT = (
    "INSERT INTO executions (message_id, task, impl, worker, pid, redelivered, published_at,"
    " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE = "UPDATE executions SET finished_at = ?, outcome = ? WHERE id = ?"


def cpu() -> float:
    """This process's user+sys CPU seconds so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(pragmas: list[str] | None, count: int) -> float:
    """Microseconds of CPU per execution with ``pragmas`` (``None``: in memory)."""
    path = ":memory:" if pragmas is None else os.path.join(tempfile.mkdtemp(), "journal.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in pragmas or []:
        conn.execute(pragma)
    if pragmas is not None:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    reader = sqlite3.connect(path, isolation_level=None) if pragmas is not None else None
    start = cpu()
    for _ in range(count):
        row = (
            "3f2c4b1e-8d7a-4c1b-9e2f-1a2b3c4d5e6f", "work", "pika", "W", os.getpid(), 0,
            time.time(), time.time(),
        )  # fmt: skip
        cur = conn.execute(INSERT, row)
        conn.execute(UPDATE, (time.time(), "ok", cur.lastrowid))
    took = cpu() - start
    if reader is not None:
        reader.close()
    conn.close()
    return took / count * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    variants: dict[str, list[str] | None] = {**VARIANTS, "memory": None}
    for i in range(args.repeat):
        for name, pragmas in variants.items():
            print(f"repeat {i}  {name:32} {run(pragmas, args.count):6.1f} us/execution", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
