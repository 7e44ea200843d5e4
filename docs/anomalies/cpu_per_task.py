"""CPU time per task of a consumer process tree: the pika worker against the bare pika loop.

    .venv/bin/python docs/anomalies/cpu_per_task.py --count 20000 --repeat 5 \
        --rows bare:1,bare:100,worker:1,worker:100,before:1 [--tree before=DIR] [--no-journal]

A private node (``testbed.provider.provision("local")``, never the system broker) gets a durable
work queue (``MQLAB_QUEUE_TYPE``, default classic) holding one *gate* message (``gate..``, two
seconds of sleep) followed by ``--count`` zero-work tasks (``task``). Then the consumer starts.
While it sleeps on the gate (no CPU) its CPU is read, and again when the last task is finished:
the difference over ``--count`` is the CPU per task, start-up (imports, connect) excluded.

* ``worker:P`` is ``python -m raw_pika.worker --prefetch P`` with a journal, as the lab runs it
  (``--no-journal`` leaves the journal out: the end is then the queue's ready count 0
  plus 1 s for the deliveries in hand, and the wall time is not the drain's); ``NAME:P`` is
  the same worker from the tree ``--tree NAME=DIR`` (e.g. ``git archive <commit> | tar -x -C
  DIR``), for interleaved before/after figures. The
  gate's start and the last finish are read from the journal.
* ``bare:P`` is lab/run/bare_pika.py's consumer loop (ack each delivery on pika's thread, no
  journal, no task call), run by this file with ``--bare``; it sleeps on the gate too and
  writes marker files for the two readings.

CPU is the process tree's user+sys from ``/proc/<pid>/stat`` (psutil), in clock ticks of 10 ms:
size ``--count`` so one reading holds >= 1 s of CPU. Each repeat runs every row once, in a
shuffled order. The machine's load average and steal are printed with every reading.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pika
import psutil

from shared import queues, settings
from shared.contract import CONTENT_TYPE, PERSISTENT, Envelope
from shared.impl import Command, WorkerSpec
from shared.journal import Journal
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision
from testbed.registry import get

QUEUE = "task_queue"
FRAMEWORKS = ("celery", "dramatiq")
"""Rows ``celery:P`` and ``dramatiq:P`` run those workers (filled through their producers)."""
GATE = "gate.."


def tree_cpu(pid: int) -> float:
    """User+sys seconds of ``pid`` and its descendants (``/proc/<pid>/stat``, via psutil)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def steal_and_busy() -> tuple[float, float]:
    """(steal, non-idle) jiffies of the whole machine so far, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return float(steal), float(user + nice + system + irq + softirq + steal)


def fill(url: str, count: int) -> None:
    """Declare the work queue (as the worker does) and put the gate and ``count`` tasks in it."""
    s = settings.load()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_delete(QUEUE)
    dead = queues.dead_letter_queue(QUEUE)
    ch.queue_declare(dead, durable=True, arguments=queues.arguments(s.queue_type))
    args = queues.work_queue_arguments(QUEUE, s.queue_type, s.delivery_limit)
    ch.queue_declare(QUEUE, durable=True, arguments=args)
    for body in [GATE] + ["task"] * count:
        env = Envelope()
        props = pika.BasicProperties(
            message_id=env.message_id,
            timestamp=env.timestamp,
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            headers=env.headers(),
        )
        ch.basic_publish("", QUEUE, body.encode(), props)
    wait_until(
        lambda: ch.queue_declare(QUEUE, passive=True).method.message_count == count + 1,
        120,
        what="the queue to hold every message",
    )
    conn.close()


def bare(url: str, count: int, prefetch: int, marks: Path) -> None:
    """lab/run/bare_pika.py's consumer, plus the gate: sleep 2 s on it, mark, and mark the end."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    if prefetch > 0:
        ch.basic_qos(prefetch_count=prefetch)
    seen = 0

    def on_message(ch, method, props, body):  # type: ignore[no-untyped-def]
        nonlocal seen
        if seen == 0 and body == GATE.encode():
            (marks / "gate").touch()
            time.sleep(2)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        seen += 1
        if seen > count:
            (marks / "done").touch()
            ch.stop_consuming()

    ch.basic_consume(QUEUE, on_message)
    ch.start_consuming()
    time.sleep(3600)  # read, then killed


def measure(url: str, row: str, count: int, args: argparse.Namespace) -> dict[str, object]:
    """Fill the queue, run one consumer, return its CPU per task and the machine's load."""
    kind, prefetch = row.split(":")
    if kind in FRAMEWORKS:  # their own message format: through their own producer
        impl = get(kind)
        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_delete(impl.task_queue())
        connection.close()
        impl.publish_work([GATE] + ["task"] * count, amqp_url=url)
    else:
        impl = get("pika")
        fill(url, count)
    tmp = Path(tempfile.mkdtemp(prefix="cpu-"))
    journal = None if args.no_journal or kind == "bare" else str(tmp / "journal.db")
    cwd = None
    if kind == "bare":
        cmd = Command(
            [
                sys.executable,
                __file__,
                "--bare",
                "--url",
                url,
                "--count",
                str(count),
                "--prefetch",
                prefetch,
                "--marks",
                str(tmp),
            ]  # fmt: skip
        )
    else:
        spec = WorkerSpec(kind, int(prefetch), journal=journal, amqp_url=url, dot_seconds=1.0)
        cmd = impl.worker_command(spec)
        if args.py_spy:  # profile it: py-spy's flame data in --py-spy (its CPU is counted too)
            spy = [
                sys.executable.replace("python", "py-spy"),
                "record",
                "-r",
                "250",
                "--gil",
                "-f",
                "raw",
            ]
            cmd = Command([*spy, "-o", args.py_spy, "--", *cmd.argv], cmd.env)
        if kind not in ("worker", *FRAMEWORKS):
            cwd = dict(t.split("=", 1) for t in args.tree)[kind]
            cmd = Command(cmd.argv, {**cmd.env, "PYTHONPATH": cwd})
    steal0, busy0 = steal_and_busy()
    with GroupProcess(cmd, log_path=tmp / "log", cwd=cwd) as proc:
        if kind == "bare":
            started = lambda: (tmp / "gate").exists()  # noqa: E731
            done = lambda: (tmp / "done").exists()  # noqa: E731
        elif journal is not None:
            j = Journal(journal)
            started = lambda: len(j.executions()) >= 1  # noqa: E731
            done = lambda: j.finished_count() == count + 1  # noqa: E731
        else:
            conn = pika.BlockingConnection(pika.URLParameters(url))
            ch = conn.channel()
            ready = lambda: ch.queue_declare(QUEUE, passive=True).method.message_count  # noqa: E731
            started = lambda: ready() < count + 1  # noqa: E731
            done = lambda: ready() == 0  # noqa: E731
        wait_until(started, 120, interval=0.01, what="the gate")
        time.sleep(0.5)  # the gate sleeps 2 s: read in its middle
        cpu0, t0 = tree_cpu(proc.pid), time.monotonic()
        wait_until(done, 600, interval=0.05, what="the drain")
        cpu1, t1 = tree_cpu(proc.pid), time.monotonic()
        if kind != "bare" and journal is None:
            time.sleep(1.0)  # the last deliveries in hand (at most the prefetch) run meanwhile
            cpu1 = tree_cpu(proc.pid)
        if args.py_spy and kind != "bare":
            proc.popen.send_signal(signal.SIGINT)  # py-spy writes its file as it stops
            proc.wait(60)
    steal1, busy1 = steal_and_busy()
    return {
        "row": row,
        "cpu_us_per_task": (cpu1 - cpu0) / count * 1e6,
        "cpu_s": cpu1 - cpu0,
        "wall_s": t1 - t0 - 1.5,  # the gate's remaining sleep is not the drain's
        "loadavg1": os.getloadavg()[0],
        "machine_busy_cores": (busy1 - busy0) / os.sysconf("SC_CLK_TCK") / (t1 - t0 + 1),
        "steal_s": (steal1 - steal0) / os.sysconf("SC_CLK_TCK"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rows", default="bare:1,bare:100,worker:1,worker:100")
    p.add_argument("--tree", action="append", default=[], help="NAME=DIR: rows NAME:P run DIR")
    p.add_argument("--no-journal", action="store_true")
    p.add_argument("--py-spy", help="profile the worker rows with py-spy into this file")
    p.add_argument("--out", help="append one JSON line per reading here")
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--prefetch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--marks", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare:
        bare(args.url, args.count, args.prefetch, Path(args.marks))
        return 0
    rows = args.rows.split(",")
    results: dict[str, list[float]] = {r: [] for r in rows}
    with provision("local") as node:
        url = node.amqp_urls[0]
        for i in range(args.repeat):
            for row in random.sample(rows, len(rows)):
                r = measure(url, row, args.count, args)
                results[row].append(float(r["cpu_us_per_task"]))  # type: ignore[arg-type]
                print(json.dumps({"repeat": i, **r}), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps({"repeat": i, **r}) + "\n")
    for row, xs in results.items():
        print(
            f"{row:12} CPU us/task median {statistics.median(xs):7.1f}  "
            f"range {min(xs):7.1f}-{max(xs):7.1f}  (n={len(xs)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
