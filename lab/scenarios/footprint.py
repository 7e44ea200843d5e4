"""Footprint: start-up time to the first task, resident memory, and lines of code.

One task waits in the queue; the lab starts a worker and times the spawn to the journal's first
``started_at`` (interpreter, framework import, connection, consumer, first delivery). The lab
does not wait for the consumer to show in the management API first: its statistics are
sampled, so that moment could only be polled late and would not add up with the journal's
figure. Once the task is done the worker is
idle and its resident set size (the whole process group, :meth:`lab.harness.Worker.rss_mb`) is
read. The size after load comes from the throughput scenario's worker, read right after it
drained N tasks. Lines of code count the implementation package's ``.py`` files without blank
and comment-only lines.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lab.harness import Lab, Outcome
from shared.impl import Implementation

NAME = "footprint"
TITLE = "Footprint"
DESCRIPTION = (
    "Worker start-up time to the first task, RSS idle and after the throughput run (MB), and "
    "lines of code of each implementation package."
)


def lines_of_code(package: str) -> dict[str, int]:
    """``{"files", "lines", "code"}`` of ``package``'s Python files (code: non-blank, not ``#``)."""
    module = importlib.import_module(package)
    root = Path(module.__file__ or "").parent
    files = lines = code = 0
    for path in sorted(root.rglob("*.py")):
        files += 1
        for line in path.read_text(errors="replace").splitlines():
            lines += 1
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                code += 1
    return {"files": files, "lines": lines, "code": code}


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Time one worker's start-up to its first task and read its idle RSS."""
    journal = lab.journal(f"footprint-{impl.name}")
    impl.publish_work(["task"], amqp_url=lab.amqp_url)
    with lab.workers_scope():
        worker = lab.start_worker(impl, "footprint", journal)
        rows = lab.wait_finished(journal, 1, 60, workers=[worker], interval=0.01)
        rss_idle = worker.rss_mb()
        processes = len(worker.process.pids())
    loc = lines_of_code(impl.package)
    first = min(e.started_at for e in rows)
    return Outcome(
        metrics={
            "startup_to_first_task_s": first - worker.spawned_at,
            "rss_idle_mb": rss_idle,
            "lines_of_code": float(loc["code"]),
        },
        samples={"processes": processes, "loc": loc, "journal": journal},
    )
