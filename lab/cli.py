"""``mqlab``: the comparison lab and a few handy commands around it.

    mqlab compare [--impl pika,celery] [--scenario throughput] [--repeat 3] [--quick] [--out DIR]
    mqlab broker up [--detach] | down | status | purge [--impl pika,celery]
    mqlab worker --impl pika [--prefetch 1] [--name w1]
    mqlab send --impl pika "A task..." [--count 10]

``compare`` provisions a private RabbitMQ node for the run (or uses ``--amqp-url``), runs every
scenario for every available implementation (missing ones are listed as missing) and writes
``reports/<UTC timestamp>/`` (or ``--out DIR``): report.md, results.json and PNG charts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, unquote, urlparse

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from lab import charts, report
from lab.harness import Config, Lab
from lab.runner import Results, RunRecord, compare
from lab.scenarios import ALL
from shared import broker_up as up_record
from shared import cli as shared_cli
from shared import implementations
from shared.broker import (
    HOW_TO_GET_RABBITMQ,
    Broker,
    ExternalBroker,
    docker_engine_available,
    local_binary_available,
)
from shared.errors import BrokerUnavailable, MqlabError
from shared.impl import Implementation, WorkerSpec
from shared.process import wait_until

console = Console()
EXTERNAL_PREFIX = "mqlab_lab_"
"""Queue prefix the lab uses on a broker it does not own, so it never touches other queues."""


class UsageError(MqlabError):
    """Bad command-line input (unknown implementation or scenario, bad count)."""

    exit_code = 2


# -- helpers ----------------------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def select_implementations(names: list[str]) -> tuple[list[Implementation], dict[str, str]]:
    """The implementations to run and the missing ones (with the reason).

    With no ``names``, every known implementation: the available ones run, the others are
    listed as missing.

    Raises:
        UsageError: an unknown name, or none of the asked-for implementations is available.
    """
    unknown = [n for n in names if n not in implementations.KNOWN]
    if unknown:
        raise UsageError(
            f"unknown implementation {', '.join(unknown)}; known: "
            f"{', '.join(implementations.KNOWN)}"
        )
    wanted = names or list(implementations.KNOWN)
    available = implementations.available()
    missing = {n: r for n, r in implementations.missing().items() if n in wanted}
    impls = [available[n] for n in wanted if n in available]
    if not impls:
        raise UsageError(f"no implementation available among {', '.join(wanted)}: {missing}")
    return impls, missing


def select_scenarios(names: list[str]) -> list[str]:
    """Scenario names in run order.

    Raises:
        UsageError: an unknown scenario.
    """
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise UsageError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(ALL)}")
    return [n for n in ALL if not names or n in names]


def external_broker(amqp_url: str, management_url: str | None) -> ExternalBroker:
    """The broker at ``amqp_url``, its management API at ``management_url`` (else
    ``MQLAB_MANAGEMENT_URL``, else port 15672 of the AMQP host), checked to answer.

    Raises:
        BrokerUnavailable: the AMQP port or the management API does not answer within 10 s
            (the message names the address and how to point mqlab elsewhere).
    """
    broker = ExternalBroker(amqp_url)
    if management_url:
        broker.management_url = management_url
    try:
        broker.start()
    except TimeoutError as e:
        if "management API" in str(e):
            raise BrokerUnavailable(
                f"the management API at {broker.management_url} does not answer (needed for "
                "queue figures): pass --management-url URL or set MQLAB_MANAGEMENT_URL"
            ) from None
        raise BrokerUnavailable(f"the broker at {amqp_url} does not answer ({e})") from None
    return broker


@contextlib.contextmanager
def lab_broker(amqp_url: str | None, management_url: str | None = None) -> Iterator[Broker]:
    """A private node for the run (local binary, else Docker), or the broker at ``amqp_url``.

    Raises:
        BrokerUnavailable: no way to run RabbitMQ here, or the broker at ``amqp_url`` (or its
            management API) does not answer.
    """
    if amqp_url:
        os.environ.setdefault("MQLAB_QUEUE_PREFIX", EXTERNAL_PREFIX)
        yield external_broker(amqp_url, management_url)
        return
    if local_binary_available():
        kind = "local"
    elif docker_engine_available():
        kind = "docker"
    else:
        raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)
    with Broker.provision(kind) as broker:
        yield broker


def render(table: report.Table) -> RichTable:
    """A report table as a rich table for the terminal."""
    out = RichTable(title=table.title, title_justify="left")
    for i, header in enumerate(table.headers):
        out.add_column(header, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


# -- compare ----------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    impls, missing = select_implementations(_split(args.impl))
    scenarios = select_scenarios(_split(args.scenario))
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if args.management_url and not args.amqp_url:
        raise UsageError("--management-url goes with --amqp-url (a private node has its own)")
    config = Config.preset(args.quick, args.repeat)
    if args.throughput_n is not None:
        if args.throughput_n < 1:
            raise UsageError("--throughput-n must be at least 1")
        config = Config(**{**config.__dict__, "throughput_n": args.throughput_n})
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out) if args.out else Path("reports") / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, reason in missing.items():
        console.print(f"[yellow]missing[/]: {name} ({reason})")

    with (
        tempfile.TemporaryDirectory(prefix="mqlab-lab-") as scratch,
        lab_broker(args.amqp_url, args.management_url) as broker,
    ):
        console.print(broker.describe())
        lab = Lab(broker, Path(scratch), config)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bar = progress.add_task("running", total=None)

            def on_run(record: RunRecord, index: int, total: int) -> None:
                status = "[red]failed[/]" if record.error else "[green]ok[/]"
                progress.console.print(
                    f"{status} {record.scenario} / {record.impl} #{record.repeat} "
                    f"({record.seconds:.1f} s)" + (f": {record.error}" if record.error else "")
                )
                progress.update(bar, total=total, completed=index, description=record.scenario)

            results = compare(lab, impls, scenarios, missing, on_run)
        if args.keep_journals:
            shutil.copytree(Path(scratch) / "journals", out_dir / "journals", dirs_exist_ok=True)
            shutil.copytree(Path(scratch) / "logs", out_dir / "logs", dirs_exist_ok=True)
        relocate(results, Path(scratch), kept=args.keep_journals)
    drawn = charts.draw(results, out_dir)
    path = report.write(results, out_dir, drawn)
    for table in report.tables(results):
        console.print(render(table))
    for line in report.reading(results):
        console.print(f"- {line}")
    console.print(f"report: {path}  ({results.meta['seconds']:.0f} s)")
    return 0


def relocate(results: Results, scratch: Path, kept: bool) -> None:
    """Rewrite the scratch-directory paths in ``results``' samples (journals).

    Kept (``--keep-journals``): relative to the report directory (``journals/001-x.db``), where
    they were copied. Not kept: the file name only, since the scratch directory is removed.
    Sets ``meta["journals_kept"]`` for the report's footer.
    """
    root = str(scratch)

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and value.startswith(root + os.sep):
            path = Path(value).relative_to(scratch)
            return str(path) if kept else path.name
        return value

    for record in results.runs:
        record.samples = fix(record.samples)
    results.meta["journals_kept"] = kept


# -- broker up / down / status / purge ---------------------------------------------------------


def cmd_broker(args: argparse.Namespace) -> int:
    if args.action == "up":
        return broker_up(args.detach)
    if args.action == "purge":
        return broker_purge(args)
    if args.action == "down":
        state = up_record.read()
        if state is None:
            console.print("no broker started by 'mqlab broker up' is running")
            return 0
        os.kill(int(state["pid"]), signal.SIGTERM)
        try:
            wait_until(
                lambda: up_record.read() is None, 60, interval=0.2, what="the broker to stop"
            )
        except TimeoutError as e:
            raise MqlabError(str(e)) from None
        console.print(f"stopped {state['amqp_url']}")
        return 0
    state = up_record.read()
    if state is None:
        console.print("no broker started by 'mqlab broker up' is running")
        return 1
    broker = ExternalBroker(state["amqp_url"])
    broker.management_url = state["management_url"]
    versions = broker.versions()
    console.print(
        f"RabbitMQ {versions['rabbitmq']} (Erlang {versions['erlang']}), pid {state['pid']}\n"
        f"  AMQP_URL={state['amqp_url']}\n  management UI {state['management_url']} (guest/guest)"
    )
    table = RichTable("queue", "ready", "unacked", "consumers")
    for name in broker.queue_names():
        q = broker.queue(name)
        if q is not None:
            table.add_row(name, str(q.ready), str(q.unacked), str(q.consumers))
    console.print(table)
    return 0


def broker_up(detach: bool) -> int:
    """Start a private node and keep it until Ctrl+C / SIGTERM / ``mqlab broker down``.

    With ``detach``, run this same command in the background and return once it is ready.
    """
    existing = up_record.read()
    if existing is not None:
        console.print(f"already running: export AMQP_URL={existing['amqp_url']}")
        return 0
    path = up_record.state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if detach:
        log = path.with_name("broker.log")
        with open(log, "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "lab.cli", "broker", "up"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: up_record.read() is not None, 120, interval=0.2, what="the broker")
        except TimeoutError as e:
            raise MqlabError(f"{e}; see {log}") from None
        state = up_record.read()
        assert state is not None
        console.print(
            f"export AMQP_URL={state['amqp_url']}\n"
            f"management UI {state['management_url']} (guest/guest)\n"
            "(stop it with: mqlab broker down)"
        )
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kind = "local" if local_binary_available() else "docker"
    with Broker.provision(kind) as broker:
        path.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "amqp_url": broker.amqp_url,
                    "management_url": broker.management_url,
                }
            )
        )
        try:
            print(broker.describe(), flush=True)
            print(f"export AMQP_URL={broker.amqp_url}   (Ctrl+C to stop)", flush=True)
            while not stop.wait(1.0):
                pass
        finally:
            path.unlink(missing_ok=True)
    return 0


def purge(broker: Broker, queue: str) -> None:
    """Purge ``queue``'s ready messages through the management API.

    ``DELETE /api/queues/<vhost>/<name>/contents`` (RabbitMQ management HTTP API reference).

    Raises:
        BrokerUnavailable: the API refused or did not answer.
    """
    url = urlparse(broker.amqp_url)
    path = f"queues/{quote(broker.vhost, safe='')}/{quote(queue, safe='')}/contents"
    try:
        response = requests.delete(
            f"{broker.management_url.rstrip('/')}/api/{path}",
            auth=(unquote(url.username or "guest"), unquote(url.password or "guest")),
            timeout=10,
        )
    except requests.RequestException as e:
        raise BrokerUnavailable(f"purging {queue} failed: {e}") from None
    if response.status_code not in (204, 404):
        raise BrokerUnavailable(f"purging {queue} failed: HTTP {response.status_code}")


def broker_purge(args: argparse.Namespace) -> int:
    """Purge every queue of the chosen implementations on the broker ``worker``/``send`` use.

    Purging goes through the management API (``DELETE /api/queues/<vhost>/<name>/contents``,
    RabbitMQ management HTTP API reference); only ready messages are removed, and the count
    printed is the queue's ``messages_ready`` as the API reported it just before the purge.

    Raises:
        UsageError: an unknown implementation, or no broker to use.
        BrokerUnavailable: the broker or its management API does not answer.
    """
    impls, _missing = select_implementations(_split(args.impl))
    url = amqp_url(args.amqp_url)
    if url is None:
        raise UsageError("no broker: pass --amqp-url, set AMQP_URL, or run 'mqlab broker up'")
    management = args.management_url
    state = up_record.read()
    if management is None and state is not None and state["amqp_url"] == url:
        management = state["management_url"]
    broker = external_broker(url, management)
    for impl in impls:
        for name in impl.queues():
            stats = broker.queue(name)
            if stats is None:
                console.print(f"{impl.name}: {name}: no such queue")
                continue
            purge(broker, name)
            console.print(f"{impl.name}: {name}: purged {stats.ready} ready message(s)")
    return 0


# -- worker / send ----------------------------------------------------------------------------


def amqp_url(given: str | None) -> str | None:
    """``--amqp-url``, else ``AMQP_URL``, else the ``mqlab broker up`` node, else ``None``."""
    if given:
        return given
    if os.environ.get("AMQP_URL"):
        return os.environ["AMQP_URL"]
    state = up_record.read()
    return str(state["amqp_url"]) if state else None


def cmd_worker(args: argparse.Namespace) -> int:
    impl = _one_impl(args.impl)
    spec = WorkerSpec(
        name=args.name,
        prefetch=args.prefetch,
        slowdown=args.slowdown,
        journal=args.journal,
        amqp_url=amqp_url(args.amqp_url),
    )
    command = impl.worker_command(spec)
    env = {**os.environ, **command.env}
    os.execvpe(command.argv[0], list(command.argv), env)


def cmd_send(args: argparse.Namespace) -> int:
    impl = _one_impl(args.impl)
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    text = " ".join(args.body) or "Hello World!"
    ids = impl.publish_work([text] * args.count, amqp_url=amqp_url(args.amqp_url))
    for message_id in ids[:10]:
        print(f" [x] Sent {text} ({message_id})")
    if len(ids) > 10:
        print(f" [x] ... {len(ids)} messages in all")
    return 0


def _one_impl(name: str) -> Implementation:
    try:
        return implementations.get(name)
    except implementations.MissingImplementation as e:
        raise UsageError(str(e)) from None


# -- entry point ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The ``mqlab`` argument parser."""
    p = argparse.ArgumentParser(
        prog="mqlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compare", help="measure the implementations side by side")
    c.add_argument("--impl", action="append", help="implementation(s), comma-separated")
    c.add_argument("--scenario", action="append", help=f"scenario(s): {', '.join(ALL)}")
    c.add_argument("--repeat", type=int, default=1, help="runs per scenario (median, min-max)")
    c.add_argument(
        "--quick",
        action="store_true",
        help="small N: 1.5-2 min for three implementations on 2 cores",
    )
    c.add_argument("--out", help="output directory (default reports/<UTC timestamp>)")
    c.add_argument("--amqp-url", help="use this broker instead of a private node")
    c.add_argument(
        "--management-url",
        help="with --amqp-url: its management API (default MQLAB_MANAGEMENT_URL, else "
        "http://<AMQP host>:15672)",
    )
    c.add_argument("--throughput-n", type=int, help="tasks per throughput drain")
    c.add_argument(
        "--keep-journals", action="store_true", help="copy journals and worker logs to --out"
    )
    c.set_defaults(func=cmd_compare)

    b = sub.add_parser("broker", help="a private RabbitMQ node to play with")
    b.add_argument("action", choices=["up", "down", "status", "purge"])
    b.add_argument("--detach", action="store_true", help="up: run in the background")
    b.add_argument("--impl", action="append", help="purge: implementation(s) (default: all)")
    b.add_argument(
        "--amqp-url", help="purge: this broker (default AMQP_URL, else the 'broker up' node)"
    )
    b.add_argument(
        "--management-url",
        help="purge: its management API (default MQLAB_MANAGEMENT_URL, else port 15672)",
    )
    b.set_defaults(func=cmd_broker)

    w = sub.add_parser("worker", help="run one worker of an implementation in the foreground")
    w.add_argument("--impl", required=True, help=", ".join(implementations.KNOWN))
    w.add_argument("--name", default=f"worker-{os.getpid()}")
    w.add_argument("--prefetch", type=int, default=1, help="0 = unlimited")
    w.add_argument("--slowdown", type=float, default=1.0)
    w.add_argument("--journal", help="SQLite journal file to record executions in")
    w.add_argument("--amqp-url")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("send", help="publish work messages through an implementation")
    s.add_argument("--impl", required=True, help=", ".join(implementations.KNOWN))
    s.add_argument("body", nargs="*", help="message text (dots = seconds of work)")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--amqp-url")
    s.set_defaults(func=cmd_send)
    return p


def main() -> None:
    """Console-script entry point (``mqlab``)."""
    args = parser().parse_args()
    shared_cli.run(lambda: int(args.func(args)))


if __name__ == "__main__":
    main()
