"""Timing a drain from the queue itself, with no journal in the worker.

A rate run publishes N messages, then starts one worker with no journal, so the figure is the
framework's own and not "framework + two SQLite writes per task". The lab reads the queue's
ready count on a connection of its own (``queue.declare`` with ``passive=True`` answers with
``message_count``, the messages ready for delivery; AMQP 0-9-1 ``queue.declare-ok``) every
``poll`` seconds (a parameter of the scenario that times the drain) from a thread, and an
*independent observer* does the same from a separate process (``python -m lab.run.drain``),
with its own connection and its own clock.

While a worker drains at prefetch P, P messages are out and every ack lets one more go, so
the ready count falls by one per task done (not so with no prefetch limit, no ``basic.qos``:
the broker pushes the whole queue at once). From the first reading below N (``t1``, ``r1``
ready) to the first reading of 0 (``t0``) the worker finished ``r1`` tasks::

    rate = r1 / (t0 - t1)

The lab's figure and the observer's are computed this way from their own readings; the report
prints their ratio per figure (the cross-check). The observer starts before the producer and
also times the queue filling up, from its first reading above 0 to its first reading of N:
the broker-side check of the producer's own publish rate. Afterwards the lab checks the count:
the queue must be empty (ready and unacknowledged 0) and the broker must have counted N acks
for it (``message_stats.ack`` of the management API).

:class:`Observer` is that separate process, started before the producer; :func:`drain` starts
the lab's own poller and the consumer, waits for the drain, checks the broker's ack count and
returns both windows. No scenario owns this module: any scenario that times a drain uses it.

At ``t1`` and ``t0`` both pollers also read the CPU time of the consumer's process tree and of
the broker (:mod:`lab.run.cost`): the lab through ``psutil``, the observer from ``/proc``
itself; each window then carries ``cpu1_<who>`` and ``cpu0_<who>`` (seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pika
import pika.exceptions
import psutil

from lab.run import cost
from lab.scenario import ScenarioFailed
from shared import cli
from shared.exit_codes import ExitCode
from shared.impl import Command
from testbed.node import Node
from testbed.process import GroupProcess, wait_until

if TYPE_CHECKING:
    from lab.run.harness import Lab


def drain_rate(window: dict[str, float]) -> float:
    """``r1 / (t0 - t1)`` of a drain window (see the module docstring), tasks per second.

    Raises:
        ValueError: an empty or instantaneous window.
    """
    span = window["t0"] - window["t1"]
    if span <= 0 or window["r1"] <= 0:
        raise ValueError(f"no drain to time in {window}")
    return window["r1"] / span


class Readings:
    """Ready counts of one queue as (epoch seconds, ready) pairs, reduced to the drain window."""

    def __init__(self, n: int, probe: cost.Probe | None = None) -> None:
        self.n = n
        self.probe = probe
        self.cpu: dict[str, float] = {}
        self.polls = 0
        self.t1: float | None = None
        self.r1 = 0
        self.t0: float | None = None
        self.full = False
        self.fill_t1: float | None = None
        self.fill_r1 = 0
        self.fill_t0: float | None = None

    def add(self, at: float, ready: int) -> bool:
        """Record one reading; return whether the queue has been drained (ready 0)."""
        self.polls += 1
        if not self.full and ready > 0 and self.fill_t1 is None:
            self.fill_t1, self.fill_r1 = at, ready
        if ready >= self.n:
            if not self.full:
                self.fill_t0 = at
            self.full = True
        elif self.full and self.t1 is None:
            self.t1, self.r1 = at, ready
            self._read_cpu("cpu1")
        if self.t1 is not None and ready == 0:
            self.t0 = at
            self._read_cpu("cpu0")
            return True
        return False

    def _read_cpu(self, mark: str) -> None:
        if self.probe is not None:
            self.cpu.update({f"{mark}_{who}": v for who, v in self.probe().items()})

    def window(self) -> dict[str, float]:
        """``{"t1", "r1", "t0", "polls"}``.

        Raises:
            ValueError: the drain was not seen start and end.
        """
        if self.t1 is None or self.t0 is None:
            raise ValueError(f"drain not seen (full={self.full}, polls={self.polls})")
        out = {"n": float(self.n), "t1": self.t1, "r1": float(self.r1), "t0": self.t0,
               "polls": float(self.polls), **self.cpu}  # fmt: skip
        if self.fill_t1 is not None and self.fill_t0 is not None and self.fill_t0 > self.fill_t1:
            out.update(fill_t1=self.fill_t1, fill_r1=float(self.fill_r1), fill_t0=self.fill_t0)
        return out


def fill_rate(window: dict[str, float]) -> float | None:
    """Messages per second the queue filled at, seen from the broker: ``(n - r) / (t0 - t1)``
    from the first reading above 0 (``r`` ready at ``t1``) to the first reading of ``n``
    (``t0``); ``None`` when the watcher did not see the fill (it started too late)."""
    if "fill_t1" not in window:
        return None
    return (window["n"] - window["fill_r1"]) / (window["fill_t0"] - window["fill_t1"])


def _ready(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue=queue, passive=True).method.message_count)


def ready_count(amqp_url: str, queue: str) -> int:
    """``queue``'s messages ready for delivery now, on a connection of its own (the passive
    ``queue.declare-ok``'s ``message_count``; exact, unlike the management API's sampled
    figures)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return _ready(connection.channel(), queue)
    finally:
        connection.close()


def watch(amqp_url: str, queue: str, n: int, interval: float, stop: threading.Event,
          readings: Readings, started: threading.Event | None = None,
          fill: bool = False) -> None:  # fmt: skip
    """Poll ``queue``'s ready count into ``readings`` until it is drained or ``stop`` is set.

    ``started`` is set once the queue is full, or with ``fill`` after the first reading (the
    watcher then times the fill too; a queue that does not exist yet reads as 0).
    """
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        while not stop.is_set():
            at = time.time()
            try:
                ready = _ready(channel, queue)
            except pika.exceptions.ChannelClosedByBroker:
                if not fill or readings.full:
                    raise
                channel, ready = connection.channel(), 0  # 404: not declared yet
            done = readings.add(at, ready)
            if started is not None and (readings.full or fill):
                started.set()
            if done:
                return
            stop.wait(max(0.0, interval - (time.time() - at)))
    finally:
        if connection.is_open:
            connection.close()


class QueueWatch:
    """The lab's own poller: a thread with its own AMQP connection (see module docstring)."""

    def __init__(self, amqp_url: str, queue: str, n: int, interval: float) -> None:
        self.readings = Readings(n)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(amqp_url, queue, n, interval))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, amqp_url: str, queue: str, n: int, interval: float) -> None:
        try:
            watch(amqp_url, queue, n, interval, self._stop, self.readings, self.started)
        except BaseException as e:  # reported by .done() / .window()
            self.error = e
            self.started.set()

    def done(self) -> bool:
        """Whether the drain ended (or the poller failed: :meth:`window` raises then)."""
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(5)

    def window(self) -> dict[str, float]:
        """The drain window; raises the poller's error or :class:`ValueError`."""
        if self.error is not None:
            raise ValueError(f"queue poller failed: {self.error}")
        return self.readings.window()


def acks(node: Node, queue: str) -> int:
    """The broker's count of acknowledgements for ``queue`` (``message_stats.ack``)."""
    vhost = quote(node.management.vhost, safe="")
    data = node.management.api(f"queues/{vhost}/{quote(queue, safe='')}")
    return int((data.get("message_stats") or {}).get("ack", 0))


def verify_count(node: Node, queue: str, n: int, timeout: float) -> None:
    """Wait until ``queue`` is empty and the broker counted ``n`` acks for it.

    Raises:
        TimeoutError: the count did not add up in time.
    """
    fresh = time.time()
    node.management.wait_for_queue(queue, timeout, ready=0, unacked=0, fresh_after=fresh)
    seen = [0]

    def counted() -> bool:
        seen[0] = acks(node, queue)
        return seen[0] >= n

    try:
        wait_until(counted, timeout, interval=0.2, what=f"{n} acks on {queue}")
    except TimeoutError:
        raise TimeoutError(f"the broker counted {seen[0]} acks on {queue}, not {n}") from None
    if seen[0] != n:
        raise TimeoutError(f"the broker counted {seen[0]} acks on {queue}, not {n}")


class Observer:
    """The independent observer (``python -m lab.run.drain --fill``), started before the producer;
    it and the lab's own poller in :func:`drain` read the queue every ``poll`` seconds.

    Raises:
        ScenarioFailed: it did not take its first reading within 30 s.
    """

    def __init__(self, lab: Lab, queue: str, n: int, label: str, poll: float) -> None:
        cfg = lab.config
        self.poll = poll
        self.out = lab.workdir / "logs" / f"drain-{label}-{time.time_ns()}.json"
        self.pids = self.out.with_suffix(".pids")
        # The fill and the drain each get the drain deadline (one for both gave up early under
        # load: "drain not seen"); the lab kills it once its window is read or the run fails.
        budget = 2 * cfg.drain_timeout + 30
        argv = [
            sys.executable, "-m", "lab.run.drain", "--amqp-url", lab.node_url, "--queue", queue,
            "--count", str(n), "--interval", str(poll), "--timeout",
            str(budget), "--fill", "--out", str(self.out), "--cpu-pids", str(self.pids),
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
    """Time one drain of ``n`` ready messages by ``consumer`` (see :mod:`lab.run.drain`).

    Raises:
        ScenarioFailed: the queue never filled, the consumer died, the drain or the count
            did not finish in time.
    """
    cfg = lab.config
    logs = lab.workdir / "logs"
    watch = QueueWatch(lab.node_url, queue, n, observer.poll)
    with observer.process:
        try:
            wait_until(watch.started.is_set, 30, interval=0.02, what="the lab to see N ready")
            if watch.error is not None:
                raise ScenarioFailed(f"queue poller failed: {watch.error}")
            with GroupProcess(consumer, log_path=logs / f"{label}-{time.time_ns()}.log") as proc:
                beams = cost.broker_pids(lab.broker)
                watch.readings.probe = cost.CpuProbe(proc.pid, beams)
                cost.write_pids(observer.pids, proc.pid, beams)

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


def publish_rate(counts: list[float], seconds: list[float]) -> float:
    """Messages published over the producer's own wall time, over every publish (``counts[i]``
    messages in ``seconds[i]``)."""
    return sum(counts) / sum(seconds)


def observed_publish_rate(windows: list[dict[str, Any]]) -> float | None:
    """The same, from the observer's fill timings (``None`` if it missed a fill)."""
    rates = [fill_rate(w) for w in windows]
    if not rates or any(r is None for r in rates):
        return None
    took = sum(float(w["n"]) / r for w, r in zip(windows, rates, strict=True) if r)
    return sum(float(w["n"]) for w in windows) / took


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.run.drain", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--fill", action="store_true", help="also time the queue filling up")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cpu-pids", help="read the CPU of the processes this file names")
    args = parser.parse_args()
    readings = Readings(args.count, cost.stat_probe(Path(args.cpu_pids)) if args.cpu_pids else None)
    stop, started = threading.Event(), threading.Event()
    marker = Path(args.out + ".started")

    def mark() -> None:
        started.wait(args.timeout)
        marker.write_text("")

    threading.Thread(target=mark, daemon=True).start()
    timer = threading.Timer(args.timeout, stop.set)
    timer.daemon = True
    timer.start()
    try:
        watch(args.amqp_url, args.queue, args.count, args.interval, stop, readings, started,
              fill=args.fill)  # fmt: skip
    except pika.exceptions.AMQPError as e:
        Path(args.out).write_text(json.dumps({"error": str(e) or type(e).__name__}))
        return ExitCode.UNAVAILABLE
    try:
        out: dict[str, Any] = readings.window()
    except ValueError as e:
        out = {"error": str(e)}
    Path(args.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    cli.run(main)
