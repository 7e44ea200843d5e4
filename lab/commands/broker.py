"""``mqlab broker up|down|status|env|purge|kill|start``.

``broker up`` starts a private node (``--cluster``: three clustered nodes) and keeps it until
Ctrl+C, SIGTERM or ``broker down``; its record (:mod:`shared.broker_up`) lets every program
find it without ``AMQP_URL``. ``broker env`` prints the lines to use it from a shell (and the
management UI's login); ``broker kill NODE`` SIGKILLs one node of the cluster (a crash) and
``broker start NODE`` asks the ``broker up`` process, which owns the nodes, to start it again
with its data, so it rejoins.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import Any
from urllib.parse import urlparse

import pika
import pika.exceptions
import requests
from rich import box
from rich.table import Table as RichTable

from lab.commands.nodes import broker_kill, broker_start, node_pid, serve_start_requests
from lab.commands.usage import UsageError, console, select_implementations, split
from shared import broker_up as up_record
from shared import pika_connection, pika_errors
from shared.errors import MqlabError
from shared.exit_codes import ExitCode
from shared.settings import amqp_urls
from testbed import registry
from testbed.cluster import Cluster
from testbed.management import Management
from testbed.node import ExternalNode, Node, mask_password
from testbed.process import wait_until
from testbed.provider import private_kind, provision


def cmd_broker(args: argparse.Namespace) -> int:
    """``mqlab broker ACTION``: dispatch to up, down, status, env, purge, kill or start."""
    if args.action == "up":
        return broker_up(args.detach, cluster=getattr(args, "cluster", False))
    if args.action == "purge":
        return broker_purge(args)
    if args.action == "env":
        return broker_env(args.show_password)
    if args.action == "kill":
        return broker_kill(args.node)
    if args.action == "start":
        return broker_start(args.node)
    if args.action == "down":
        state = up_record.read()
        if state is None:
            console.print("no broker started by 'mqlab broker up' is running")
            return 0
        # read() checked the pid is this user's own `mqlab broker up` (shared.broker_up).
        try:
            os.kill(int(state["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            console.print("no broker started by 'mqlab broker up' is running")
            return 0
        except PermissionError as e:
            raise MqlabError(f"cannot stop pid {state['pid']}: {e.strerror}") from None
        try:
            wait_until(
                lambda: up_record.read() is None, 60, interval=0.2, what="the broker to stop"
            )
        except TimeoutError as e:
            raise MqlabError(str(e)) from None
        console.print(f"stopped {mask_password(state['amqp_url'])}")
        return 0
    state = up_record.read()
    if state is None:
        console.print("no broker started by 'mqlab broker up' is running")
        return ExitCode.UNAVAILABLE
    if state.get("nodes"):
        return cluster_status(state)
    broker = ExternalNode(state["amqp_url"], state["management_url"])
    versions = broker.management.versions()
    console.print(
        f"RabbitMQ {versions['rabbitmq']} (Erlang {versions['erlang']}), node pid "
        f"{node_pid(state.get('pid_file')) or '-'} ('mqlab broker up' pid {state['pid']})\n"
        f"  AMQP_URL={mask_password(state['amqp_url'])}\n  management UI {state['management_url']}"
    )
    console.print(queue_table(broker.management))
    console.print(dead_letter_table(broker.management))
    return 0


def cluster_status(state: dict[str, Any]) -> int:
    """``mqlab broker status`` of a cluster: per node, up or down and the quorum queues it
    leads (management API ``leader`` field, asked of any live node)."""
    nodes: list[dict[str, str]] = state["nodes"]
    management = Management(
        nodes[0]["management_url"],
        state["amqp_url"],
        fallbacks=[n["management_url"] for n in nodes[1:]],
    )
    leads: dict[str, list[str]] = {}
    with contextlib.suppress(requests.RequestException):
        for q in management.queues():
            if q.get("type") == "quorum" and q.get("leader"):
                leads.setdefault(str(q["leader"]), []).append(str(q["name"]))
    console.print(
        f"RabbitMQ cluster of {len(nodes)} nodes ('mqlab broker up' pid {state['pid']})\n"
        f"  AMQP_URL={mask_password(state['amqp_url'])}"
    )
    table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("node", "pid", "state", "AMQP port", "UI port"):
        table.add_column(header, no_wrap=True)
    table.add_column("leads (quorum queues)", overflow="fold")
    for n in nodes:
        up = Management(n["management_url"], state["amqp_url"]).answers()
        table.add_row(
            n["name"].removesuffix("@localhost"),
            str(node_pid(n.get("pid_file")) or "-"),
            "up" if up else "DOWN",
            str(urlparse(n["amqp_url"]).port),
            str(urlparse(n["management_url"]).port),
            ", ".join(sorted(leads.get(n["name"], []))) or "-",
        )
    console.print(table)
    with contextlib.suppress(requests.RequestException):  # no node answers: the table says DOWN
        console.print(queue_table(management))
        console.print(dead_letter_table(management))
    return 0


def queue_table(management: Management) -> RichTable:
    """Every queue with its ready, unacked and consumer counts (management API).

    Raises:
        requests.RequestException: the management API does not answer.
    """
    table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("queue", overflow="fold")
    for header in ("ready", "unacked", "consumers"):
        table.add_column(header, justify="right", no_wrap=True)
    for name in management.queue_names():
        q = management.queue(name)
        if q is not None:
            table.add_row(name, str(q.ready), str(q.unacked), str(q.consumers))
    return table


def dead_letter_table(management: Management) -> RichTable:
    """Each implementation's dead-letter queue and how many messages are parked in it
    (``<queue>.dead``; Dramatiq's ``.XQ``): what a worker could not process, or what exceeded
    the quorum delivery limit (:mod:`shared.poison`). "-" where the queue does not exist yet.

    Raises:
        requests.RequestException: the management API does not answer.
    """
    table = RichTable("implementation", "dead-letter queue", "parked", title="dead letters")
    for impl in registry.available().values():
        name = impl.dead_letter_queue()
        stats = management.queue(name)
        table.add_row(impl.name, name, "-" if stats is None else str(stats.ready + stats.unacked))
    return table


def broker_up(detach: bool, cluster: bool = False) -> int:
    """Start a private node (``cluster``: three clustered nodes, :mod:`testbed.cluster`) and
    keep it until Ctrl+C / SIGTERM / ``mqlab broker down``.

    With ``detach``, run this same command in the background and return once it is ready.

    Raises:
        UsageError: a node of the other kind (single node, cluster) is already running.
    """
    existing = up_record.read()
    if existing is not None:
        running = "a cluster" if existing.get("nodes") else "a single node"
        if bool(existing.get("nodes")) != cluster:  # not what was asked for
            raise UsageError(
                f"{running} is already running ({mask_password(existing['amqp_url'])}); "
                "stop it first: mqlab broker down"
            )
        console.print(f"already running: {mask_password(existing['amqp_url'])}")
        return 0
    lock = up_record.claim()  # one node per record: held until this process (or its child) ends
    if lock is None:
        return _already_starting()
    if detach:
        up_record.private_dir(create=True)  # 0700, checked, before the log goes in it
        log = up_record.log_file()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "lab.cli", "broker", "up"]
                + (["--cluster"] if cluster else []),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock,),  # the background process goes on holding the lock
                env={**os.environ, up_record.LOCK_FD_ENV: str(lock)},
            )
        try:
            wait_until(lambda: up_record.read() is not None, 120, interval=0.2, what="the broker")
        except TimeoutError as e:
            raise MqlabError(f"{e}; see {log}") from None
        finally:
            os.close(lock)
        state = up_record.read()
        assert state is not None
        console.print(
            f"RabbitMQ at {mask_password(state['amqp_url'])}; every mqlab program uses it "
            "while AMQP_URL is unset\n"
            f"management UI {state['management_url']}\n"
            + "".join(
                f"  node {n['name']}: AMQP {mask_password(n['amqp_url'])}  "
                f"management UI {n['management_url']}\n"
                for n in state.get("nodes", [])
            )
            + ("(quorum queues: export MQLAB_QUEUE_TYPE=quorum)\n" if cluster else "")
            + "(stop it with: mqlab broker down)"
        )
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with (
        provision("cluster" if cluster else private_kind()) as node,
        up_record.recorded(
            node.failover_url,
            node.management_url,
            nodes=_nodes(node),
            pid_file=str(getattr(node, "pid_file", "")),
        ),
    ):
        print(node.describe(), flush=True)
        print("every mqlab program uses it while AMQP_URL is unset (Ctrl+C to stop)", flush=True)
        while not stop.wait(0.5):
            if isinstance(node, Cluster):
                serve_start_requests(node)
    return 0


def broker_env(show_password: bool) -> int:
    """Print the shell lines that point a program at the ``broker up`` node (``export
    AMQP_URL=...``, and ``MQLAB_MANAGEMENT_URL`` for ``mqlab compare --amqp-url``) and the
    management UI's address and login, as comments. The password is masked unless
    ``show_password``: then ``eval "$(mqlab broker env --show-password)"`` sets them; without
    it the ``AMQP_URL`` line is a comment too, so pasting it cannot set a masked password.

    Raises:
        UsageError: no ``broker up`` node runs.
    """
    state = up_record.read()
    if state is None:
        raise UsageError(
            "no broker started by 'mqlab broker up' is running; mqlab broker up --detach"
        )
    url: str = state["amqp_url"]
    shown = url if show_password else mask_password(url)
    user = urlparse(amqp_urls(url)[0])
    comment = "" if show_password else "# "
    console.print(f"{comment}export AMQP_URL='{shown}'", markup=False, highlight=False)
    console.print(f"export MQLAB_MANAGEMENT_URL={state['management_url']}", highlight=False)
    for n in state.get("nodes") or [{"name": "", "management_url": state["management_url"]}]:
        where = f" ({n['name']})" if n["name"] else ""
        console.print(f"# management UI{where}: {n['management_url']}", highlight=False)
    password = user.password if show_password else "(add --show-password to print it)"
    console.print(
        f"# log in as {user.username}, password {password}", markup=False, highlight=False
    )
    return 0


def _already_starting() -> int:
    """Another ``broker up`` holds the lock: wait for its record (its node is starting) and say
    where it runs, as for a node already running.

    Raises:
        MqlabError: no record appeared within 120 s (the other one is still starting, or stuck).
    """
    console.print("a node is already starting (another 'mqlab broker up'); waiting for it")
    try:
        wait_until(lambda: up_record.read() is not None, 120, interval=0.2, what="that node")
    except TimeoutError:
        raise MqlabError(
            "another 'mqlab broker up' is still starting its node after 120 s; see "
            f"{up_record.log_file()}, or stop it with: mqlab broker down"
        ) from None
    state = up_record.read()
    assert state is not None
    console.print(f"already running: {mask_password(state['amqp_url'])}")
    return 0


def _nodes(node: Node) -> list[dict[str, str]]:
    """Each node of a cluster (name and URLs) for the record; ``[]`` for a single node."""
    if not isinstance(node, Cluster):
        return []
    return [
        {
            "name": n.node,
            "amqp_url": n.amqp_url,
            "management_url": n.management_url,
            "pid_file": str(n.pid_file),
        }
        for n in node.nodes
    ]


def broker_purge(args: argparse.Namespace) -> int:
    """Purge every queue of the chosen implementations on the broker ``worker``/``send`` use.

    Purging is AMQP ``queue.purge`` (RabbitMQ docs, "Queues: Purging"): only ready messages are
    removed, and the count printed is the one ``queue.purge-ok`` returns. Given several nodes'
    URIs (a cluster), pika connects to the first that answers.

    Raises:
        UsageError: an unknown implementation, or no broker to use.
        MqlabError: the broker does not answer or refuses (the one-line reason, the AMQP URL
            with its password masked).
    """
    impls, _missing = select_implementations(split(args.impl))
    url = amqp_url(args.amqp_url)
    if url is None:
        raise UsageError("no broker: pass --amqp-url, set AMQP_URL, or run 'mqlab broker up'")
    params = pika_connection.node_parameters(amqp_urls(url), timeout=10, heartbeat=0)
    try:
        connection = pika_connection.connect(params).connection
    except MqlabError as e:
        raise type(e)(f"{e} (AMQP_URL {mask_password(url)})") from None
    queues = messages = absent = 0
    with contextlib.closing(connection):
        for impl in impls:
            for name in impl.queues():
                channel = connection.channel()
                try:
                    purged = channel.queue_purge(name).method.message_count
                except pika.exceptions.ChannelClosedByBroker as e:
                    if e.reply_code != 404:
                        raise pika_errors.translate(e, params, name, "purge") from None
                    absent += 1  # not declared yet: nothing to purge
                    continue
                channel.close()
                queues += 1
                if purged:
                    messages += purged
                    console.print(f"{impl.name}: {name}: purged {purged} ready message(s)")
    console.print(
        f"purged {messages} ready message(s) from {queues} queue(s) of "
        f"{', '.join(impl.name for impl in impls)}"
        + (f" ({absent} not declared yet)" if absent else "")
    )
    return 0


def amqp_url(given: str | None) -> str | None:
    """``--amqp-url``, else ``AMQP_URL``, else the ``mqlab broker up`` node, else ``None``."""
    if given:
        return given
    if os.environ.get("AMQP_URL"):
        return os.environ["AMQP_URL"]
    state = up_record.read()
    return str(state["amqp_url"]) if state else None
