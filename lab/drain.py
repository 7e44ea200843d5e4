"""Timing a drain from the queue itself, with no journal in the worker.

A rate run publishes N messages, then starts one worker with no journal, so the figure is the
framework's own and not "framework + two SQLite writes per task". The lab reads the queue's
ready count on a connection of its own (``queue.declare`` with ``passive=True`` answers with
``message_count``, the messages ready for delivery; AMQP 0-9-1 ``queue.declare-ok``) every
``Config.drain_poll`` seconds from a thread, and an *independent observer* does the same from
a separate process (``python -m lab.drain``), with its own connection and its own clock.

While a worker drains at prefetch P, P messages are out and every ack lets one more go, so
the ready count falls by one per task done. From the first reading below N (``t1``, ``r1``
ready) to the first reading of 0 (``t0``) the worker finished ``r1`` tasks::

    rate = r1 / (t0 - t1)

The lab's figure and the observer's are computed this way from their own readings; the report
prints their ratio per figure (the cross-check). The observer starts before the producer and
also times the queue filling up, from its first reading above 0 to its first reading of N:
the broker-side check of the producer's own publish rate. Afterwards the lab checks the count:
the queue must be empty (ready and unacknowledged 0) and the broker must have counted N acks
for it (``message_stats.ack`` of the management API).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions

from shared import cli
from testbed.node import Node
from testbed.process import wait_until


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

    def __init__(self, n: int) -> None:
        self.n = n
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
        if self.t1 is not None and ready == 0:
            self.t0 = at
            return True
        return False

    def window(self) -> dict[str, float]:
        """``{"t1", "r1", "t0", "polls"}``.

        Raises:
            ValueError: the drain was not seen start and end.
        """
        if self.t1 is None or self.t0 is None:
            raise ValueError(f"drain not seen (full={self.full}, polls={self.polls})")
        out = {"n": float(self.n), "t1": self.t1, "r1": float(self.r1), "t0": self.t0,
               "polls": float(self.polls)}  # fmt: skip
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.drain", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--fill", action="store_true", help="also time the queue filling up")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    readings = Readings(args.count)
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
        return 1
    try:
        out: dict[str, Any] = readings.window()
    except ValueError as e:
        out = {"error": str(e)}
    Path(args.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    cli.run(main)
