"""Where a run came from, and how busy the machine was while it ran.

Every report and results.json states its provenance: the git commit of the code (and whether
the work tree had uncommitted changes), the exact command line, the versions and the machine
(:func:`lab.run.runner.machine`), and the machine's load during each run (:class:`LoadMeter`).

The load comes from ``/proc/stat``'s first line (``cpu``: cumulative clock ticks per state over
all cores; ``proc(5)``): the busy ticks (user, nice, system, irq, softirq, steal) of the whole
machine minus the lab's own (this process and its descendants: workers, observers, brokers it
started; ``psutil`` and ``resource.getrusage(RUSAGE_CHILDREN)`` for those already reaped) are
the *other* processes' CPU; ``steal`` is the time a hypervisor gave this machine's cores to
someone else. Both are shares of the run's wall time times the cores. A run where either
exceeds :data:`BUSY_OTHER` / :data:`BUSY_STEAL` is flagged busy in the report.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
BUSY_OTHER = 0.25
"""Other processes' CPU, as a share of all cores, above which a run counts as busy."""
BUSY_STEAL = 0.05
"""Steal, as a share of all cores, above which a run counts as busy."""
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
"""One ``/proc`` clock tick, seconds (10 ms on Linux with ``USER_HZ`` 100)."""


def git() -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the repository the lab runs from (``"unknown"`` without git)."""

    def out(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        return {"commit": out("rev-parse", "HEAD"), "dirty": bool(out("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def command_line() -> str:
    """The command that started this process, shell-quoted (``mqlab compare --quick``;
    ``python -m lab.cli compare ...`` when started as a module)."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py" or program.parent.name == "lab":
        head = ["python", "-m", f"lab.{program.stem}" if program.stem != "__main__" else "lab"]
    else:
        head = [program.name]
    return shlex.join([*head, *sys.argv[1:]])


def _stat() -> tuple[float, float]:
    """Busy and steal seconds of the whole machine so far (``/proc/stat``'s ``cpu`` line)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) * CLOCK_TICK_S, steal * CLOCK_TICK_S


def _own() -> float:
    """CPU seconds of this process, its live descendants and its reaped children."""
    total = sum(resource.getrusage(who)[0] + resource.getrusage(who)[1]
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                total += t.user + t.system
    return total


class LoadMeter:
    """The machine's load over one run: start it before, :meth:`read` after."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.busy, self.steal = _stat()
        self.own = _own()

    def read(self) -> dict[str, Any]:
        """``{"other_cpu_share", "steal_share", "busy"}``: shares of all cores over the run."""
        wall = (time.monotonic() - self.at) * (os.cpu_count() or 1)
        busy, steal = _stat()
        own = _own()
        if wall <= 0:
            return {"other_cpu_share": 0.0, "steal_share": 0.0, "busy": False}
        other = max(0.0, (busy - self.busy) - (steal - self.steal) - (own - self.own)) / wall
        stolen = (steal - self.steal) / wall
        return {
            "other_cpu_share": round(other, 4),
            "steal_share": round(stolen, 4),
            "busy": other > BUSY_OTHER or stolen > BUSY_STEAL,
        }
