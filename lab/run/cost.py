"""What a task costs in CPU: the consumer's process tree, the broker's beam, the producer.

A drain (:mod:`lab.run.drain`) reads the CPU time (user + system) of the consumer's whole
process tree and of the broker's beam process(es) at the first reading below N (``t1``) and at
the first reading of 0 (``t0``), the same readings that time the drain; over the ``r1`` tasks
done in between::

    CPU per task = (cpu(t0) - cpu(t1)) / r1

The lab reads it through ``psutil`` (:class:`CpuProbe`, every pid of the consumer's tree);
the independent observer process reads ``/proc/<pid>/stat`` itself (fields 14-15, ``utime``
and ``stime`` in clock ticks; ``proc(5)``) for every process of the consumer's process group
and the broker's pids, at its own readings (:func:`stat_probe`). Both count in ``/proc``'s
clock ticks (:data:`lab.run.provenance.CLOCK_TICK_S`), so a window must hold far more than a
tick for the figure to mean anything: :func:`tick_share` is one tick over the window's CPU (the
lab flags a window above 1%, and a scenario can size N so the window holds about a second of
CPU).

The producer's cost is the CPU of the thread (in the lab) or process (a separate producer,
:mod:`lab.run.publisher`) that published, over the messages published (``getrusage``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from lab.run.provenance import CLOCK_TICK_S
from lab.scenario import Outcome
from testbed.node import Node

Probe = Callable[[], dict[str, float]]
"""A CPU reading: ``{"consumer": s, "broker": s}`` (CPU seconds so far; a key is missing when
that side could not be read)."""
TICK_SHARE = 0.01
"""A cost window where one clock tick is more than this share of its CPU is flagged."""


def broker_pids(node: Node) -> list[int]:
    """The OS pids of ``node``'s beam processes (every node of a cluster), from the pid file
    each local node writes (``RABBITMQ_PID_FILE``); empty for a broker the lab does not run."""
    out = []
    for each in getattr(node, "nodes", [node]):
        pid_file = getattr(each, "pid_file", None)
        if pid_file is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            out.append(int(Path(pid_file).read_text().strip()))
    return out


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (``psutil``); a process that is gone counts 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


class CpuProbe:
    """The lab's reading: the consumer group ``leader``'s tree and the ``broker`` pids."""

    def __init__(self, leader: int, broker: list[int]) -> None:
        self.leader, self.broker = leader, broker

    def __call__(self) -> dict[str, float]:
        out = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.leader)
            out["consumer"] = tree_cpu([root.pid, *(c.pid for c in root.children(True))])
        if self.broker:
            out["broker"] = tree_cpu(self.broker)
        return out


def stat_cpu(pid: int) -> tuple[int, float] | None:
    """``(process group, user + system CPU seconds)`` of ``pid`` from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[2]), (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in process group ``pgid``, from ``/proc`` directly."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := stat_cpu(int(entry))) and found[0] == pgid:
            total += found[1]
    return total


def stat_probe(pids_file: Path) -> Probe:
    """The observer's reading: every process whose group is the consumer's, and the broker's
    pids, from ``/proc`` directly; ``pids_file`` (written by the lab once the consumer runs)
    holds ``{"pgid": ..., "broker": [...]}``."""

    def read() -> dict[str, float]:
        try:
            known = json.loads(pids_file.read_text())
        except (OSError, ValueError):
            return {}
        out = {"consumer": group_cpu(known["pgid"])}
        if known["broker"]:
            out["broker"] = sum(found[1] for p in known["broker"] if (found := stat_cpu(p)))
        return out

    return read


def write_pids(path: Path, leader: int, broker: list[int]) -> None:
    """Tell the observer which processes to read (see :func:`stat_probe`)."""
    path.write_text(json.dumps({"pgid": leader, "broker": broker}))


def per_task_us(window: dict[str, Any], who: str) -> float | None:
    """CPU microseconds per task of ``who`` (``consumer``/``broker``) over a drain window, or
    ``None`` when the window has no reading for it."""
    start, end = window.get(f"cpu1_{who}"), window.get(f"cpu0_{who}")
    if start is None or end is None or not window.get("r1"):
        return None
    return float((end - start) / window["r1"] * 1e6)


def tick_share(window: dict[str, Any], who: str = "consumer") -> float | None:
    """One clock tick over the CPU the window holds (``inf`` for a window with none)."""
    start, end = window.get(f"cpu1_{who}"), window.get(f"cpu0_{who}")
    if start is None or end is None:
        return None
    return CLOCK_TICK_S / (end - start) if end > start else float("inf")


def agrees(ours: float, theirs: float, tasks: float, tolerance: float) -> bool:
    """Whether two readings of CPU per task (µs) agree within ``tolerance`` of ours plus the
    clock's resolution: 4 ticks (each reading's two ends, twice) spread over the ``tasks``."""
    slack = tolerance * abs(ours) + 4 * CLOCK_TICK_S / tasks * 1e6
    return abs(ours - theirs) <= slack


Drain = Callable[[int], tuple[dict[str, Any], float, float]]
"""``drain(n) -> (drain result, publish seconds, producer CPU seconds)``: publish ``n`` tasks
and drain them once (:func:`lab.run.drain.drain`)."""
MAX_N = 100_000
"""The most tasks a drain sized for its CPU window publishes."""


def sized(
    n: int, cpu_seconds: float, once: Drain
) -> tuple[tuple[dict[str, Any], float, float], int, dict[str, float]]:
    """Drain ``n`` tasks; if the consumer's window held less than ``cpu_seconds`` of CPU,
    drain again with N sized from this probe so that it holds about that much (at most
    :data:`MAX_N`). Returns the drain kept, its N, and the probe's ``{"probe_n",
    "probe_cpu_us"}`` (empty when no second drain ran)."""
    drained = once(n)
    held = per_task_us(drained[0]["lab"], "consumer")
    if cpu_seconds > 0 and held and held * n / 1e6 < cpu_seconds:
        bigger = min(MAX_N, math.ceil(cpu_seconds / (held / 1e6) * 1.1))
        if bigger > n:
            return once(bigger), bigger, {"probe_n": float(n), "probe_cpu_us": held}
    return drained, n, {}


def record(out: Outcome, label: str, drained: dict[str, Any], remedy: str) -> None:
    """Put a drain's CPU figures into ``out``: ``cpu_<label>_us`` (consumer),
    ``broker_cpu_<label>_us`` and ``check_cpu_<label>`` (the lab's consumer reading over the
    observer's), with a note when the window is coarse (``remedy`` says what fixes it)."""
    for who, key in (("consumer", f"cpu_{label}_us"), ("broker", f"broker_cpu_{label}_us")):
        out.metrics[key] = per_task_us(drained["lab"], who)
    mine, other = (per_task_us(drained[w], "consumer") for w in ("lab", "observer"))
    if mine and other:
        out.metrics[f"check_cpu_{label}"] = mine / other
    share = tick_share(drained["lab"])
    if share is not None and share > TICK_SHARE:
        out.notes.append(
            f"the consumer's CPU at {label} is coarse: one clock tick is {share:.1%} of the "
            f"window's CPU (target under {TICK_SHARE:.0%}; {remedy} sizes the drain)"
        )


@contextlib.contextmanager
def thread_cpu() -> Iterator[list[float]]:
    """The CPU seconds of the calling thread over the block (``RUSAGE_THREAD``), in ``[0]``."""
    out = [0.0]
    before = resource.getrusage(resource.RUSAGE_THREAD)
    try:
        yield out
    finally:
        after = resource.getrusage(resource.RUSAGE_THREAD)
        out[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
