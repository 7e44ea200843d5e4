"""A rate run's drain, timed by the lab and by an independent observer (see :mod:`lab.drain`).

:class:`Observer` is the separate ``python -m lab.drain --fill`` process, started before the
producer; :func:`drain` starts the lab's own poller and the consumer, waits for the drain,
checks the broker's ack count and returns both windows.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from lab.drain import QueueWatch, fill_rate, verify_count
from lab.harness import Lab
from lab.outcome import ScenarioFailed
from shared.impl import Command
from testbed.process import GroupProcess, wait_until


class Observer:
    """The independent observer (``python -m lab.drain --fill``), started before the producer.

    Raises:
        ScenarioFailed: it did not take its first reading within 30 s.
    """

    def __init__(self, lab: Lab, queue: str, n: int, label: str) -> None:
        cfg = lab.config
        self.out = lab.workdir / "logs" / f"drain-{label}-{time.time_ns()}.json"
        argv = [
            sys.executable, "-m", "lab.drain", "--amqp-url", lab.node_url, "--queue", queue,
            "--count", str(n), "--interval", str(cfg.drain_poll), "--timeout",
            str(cfg.drain_timeout), "--fill", "--out", str(self.out),
        ]  # fmt: skip
        self.process = GroupProcess(Command(argv), log_path=self.out.with_suffix(".log"))
        marker = Path(str(self.out) + ".started")
        try:
            wait_until(marker.exists, 30, interval=0.02, what="the observer's first reading")
        except TimeoutError as e:
            self.process.kill()
            raise ScenarioFailed(str(e)) from None

    @contextlib.contextmanager
    def killed_on_error(self) -> Iterator[None]:
        """Kill the observer if the block raises (the drain that would end it never comes)."""
        try:
            yield
        except BaseException:
            self.process.kill()
            raise

    def window(self) -> dict[str, Any]:
        """Its drain window (with the fill), once it has seen the queue drained."""
        code = self.process.wait(30)
        self.process.kill()
        theirs: dict[str, Any] = (
            json.loads(self.out.read_text()) if code == 0 else {"error": f"exit {code}"}
        )
        return theirs


def drain(
    lab: Lab, queue: str, n: int, consumer: Command, label: str, observer: Observer
) -> dict[str, Any]:
    """Time one drain of ``n`` ready messages by ``consumer`` (see :mod:`lab.drain`).

    Raises:
        ScenarioFailed: the queue never filled, the consumer died, the drain or the count
            did not finish in time.
    """
    cfg = lab.config
    logs = lab.workdir / "logs"
    watch = QueueWatch(lab.node_url, queue, n, cfg.drain_poll)
    with observer.process:
        try:
            wait_until(watch.started.is_set, 30, interval=0.02, what="the lab to see N ready")
            if watch.error is not None:
                raise ScenarioFailed(f"queue poller failed: {watch.error}")
            with GroupProcess(consumer, log_path=logs / f"{label}-{time.time_ns()}.log") as proc:

                def drained() -> bool:
                    if not proc.alive() and not watch.done():
                        raise ScenarioFailed(f"the consumer exited: {proc.output()[-300:]}")
                    return watch.done()

                wait_until(drained, cfg.drain_timeout, interval=0.05, what="the drain")
                verify_count(lab.broker, queue, n, 30)
                rss = lab_rss(proc)
            theirs = observer.window()
        except TimeoutError as e:
            raise ScenarioFailed(str(e)) from None
        finally:
            watch.stop()
    try:
        ours = watch.window()
        if "error" in theirs:
            raise ValueError(f"observer: {theirs['error']}")
    except ValueError as e:
        raise ScenarioFailed(str(e)) from None
    return {"lab": ours, "observer": theirs, "acks": n, "rss_after_mb": rss}


def lab_rss(proc: GroupProcess) -> float:
    """Resident set size of ``proc``'s group, MiB."""
    total = 0
    for pid in proc.pids():
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


def publish_rate(n: int, seconds: list[float]) -> float:
    """N per publish over the producer's own wall time of every publish."""
    return n * len(seconds) / sum(seconds)


def observed_publish_rate(n: int, windows: list[dict[str, Any]]) -> float | None:
    """The same, from the observer's fill timings (``None`` if it missed a fill)."""
    rates = [fill_rate(w) for w in windows]
    if not rates or any(r is None for r in rates):
        return None
    return n * len(rates) / sum(n / r for r in rates if r)
