"""The first hour of a new user: no silent fallback, the broker commands, help and Makefile.

* With neither ``AMQP_URL`` nor a ``mqlab broker up`` node, every program stops with one line
  naming both ways to get a broker, exit 78 (control: given a private node's URL it goes on);
  no connection to port 5672 is ever attempted (:data:`GUARDED`).

* ``mqlab broker env`` prints ``export AMQP_URL=...`` and the management UI's address; the
  password only with ``--show-password``, and then it opens an AMQP connection and logs in to
  the management API (control: the masked one is refused).
* ``mqlab broker status`` shows each cluster node's pid and the node leading a quorum queue;
  ``broker kill N`` SIGKILLs that pid (status then shows it DOWN: the control that status reads
  the node, not the record) and ``broker start N`` has the ``broker up`` process start it
  again, with its data.
* ``make compare ARG=...`` (a typo for ARGS) stops before running anything (control: ARGS).
* ``--help`` fits 80 columns, shows no code comment, and ``broker up --help`` is its own; the
  compare tables fit 80 columns and never cut a number (control: rich's default table does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pika
import pytest
import requests
from rich.console import Console
from rich.table import Table as RichTable

from lab.commands.compare import render
from lab.commands.nodes import serve_start_requests
from lab.report import markdown
from shared.impl import Command, Implementation, WorkerSpec
from testbed.cluster import Cluster
from testbed.node import Node
from tests.helpers import impl_params, run_to_end
from tests.test_broker_record import _genuine_record, tmpdir_env  # noqa: F401  (a fixture)

CHECKOUT = Path(__file__).resolve().parent.parent


def _mqlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "80"}
    without_url = Command([sys.executable, "-m", "lab.cli", *args], {})
    saved = os.environ.pop("AMQP_URL", None)  # the record, not AMQP_URL, names the broker
    try:
        return run_to_end(without_url, env, timeout=timeout)
    finally:
        if saved is not None:
            os.environ["AMQP_URL"] = saved


@pytest.mark.timeout(90)
def test_broker_env_shows_the_password_only_on_request(tmpdir_env: Path, broker: Node) -> None:  # noqa: F811
    with _genuine_record(amqp_url=broker.amqp_url, management_url=broker.management_url):
        masked = _mqlab("broker", "env")
        shown = _mqlab("broker", "env", "--show-password")
    assert masked.returncode == 0 and shown.returncode == 0, masked.stderr + shown.stderr
    password = str(pika.URLParameters(broker.amqp_url).credentials.password)
    assert password not in masked.stdout and "--show-password" in masked.stdout
    assert f"export MQLAB_MANAGEMENT_URL={broker.management_url}" in shown.stdout
    found = re.search(r"^export AMQP_URL='([^']+)'$", shown.stdout, re.M)
    assert found is not None, shown.stdout
    # The printed URL connects, and the printed login opens the management API ...
    pika.BlockingConnection(pika.URLParameters(found.group(1))).close()
    login = re.search(r"^# log in as (\S+), password (\S+)$", shown.stdout, re.M)
    assert login is not None, shown.stdout
    api = f"{broker.management_url}/api/whoami"
    assert requests.get(api, auth=(login[1], login[2]), timeout=10).status_code == 200
    # ... control: the masked login is refused
    refused = re.search(r"^# export AMQP_URL='amqp://(\w+):([^@]+)@", masked.stdout, re.M)
    assert refused is not None, masked.stdout
    assert not re.search(r"^export AMQP_URL", masked.stdout, re.M), "pasted, it sets a bad URL"
    assert requests.get(api, auth=(refused[1], refused[2]), timeout=10).status_code == 401
    lines = "\n".join(masked.stdout.splitlines() + shown.stdout.splitlines())
    assert all(len(line) <= 200 for line in lines.splitlines())


def _row(status: str, node: str) -> list[str]:
    """The cells of ``node``'s row in ``broker status``'s table of nodes."""
    short = node.removesuffix("@localhost")
    rows = [x.split() for x in status.splitlines() if x.strip().startswith(short + " ")]
    assert rows, status
    return rows[0]


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "impl", impl_params("quorum", where=lambda i: i.name == "pika"), indirect=True
)
def test_broker_status_kill_and_start_a_cluster_node(
    tmpdir_env: Path,  # noqa: F811
    cluster: Cluster,
    impl: Implementation,
) -> None:
    impl.publish_work(["status."], amqp_url=cluster.failover_url)  # tmpdir_env unset AMQP_URL
    leader = cluster.leader_of(impl.task_queue(), timeout=90)
    victim = next(n for n in cluster.nodes if n is not leader)
    number = victim.node.split("@")[0].rsplit("-", 1)[-1]
    nodes = [
        {"name": n.node, "amqp_url": n.amqp_url, "management_url": n.management_url,
         "pid_file": str(n.pid_file)}
        for n in cluster.nodes
    ]  # fmt: skip
    record = {"amqp_url": cluster.failover_url, "management_url": leader.management_url}
    with _genuine_record(nodes=nodes, **record):
        try:
            status = _mqlab("broker", "status")
            assert status.returncode == 0, status.stderr
            pid = victim.pid_file.read_text().strip()
            assert _row(status.stdout, victim.node)[1:3] == [pid, "up"], status.stdout
            assert impl.task_queue()[:8] in " ".join(_row(status.stdout, leader.node)), (
                status.stdout
            )

            killed = _mqlab("broker", "kill", number)
            assert killed.returncode == 0 and f"pid {pid}" in killed.stdout, killed.stderr
            status = _mqlab("broker", "status")
            # control: status reads the node, not the record
            assert _row(status.stdout, victim.node)[1:3] == ["-", "DOWN"], status.stdout

            # This test plays the `broker up` process, which owns the nodes and starts them.
            done = threading.Event()

            def serve() -> None:
                while not done.wait(0.5):
                    serve_start_requests(cluster)

            server = threading.Thread(target=serve, daemon=True)
            server.start()
            try:
                started = _mqlab("broker", "start", number, timeout=240)
            finally:
                done.set()
                server.join(timeout=200)
            assert started.returncode == 0 and "rejoined" in started.stdout, started.stderr
            assert victim.alive()
            status = _mqlab("broker", "status")
            again = victim.pid_file.read_text().strip()
            assert _row(status.stdout, victim.node)[1:3] == [again, "up"], status.stdout
        finally:
            if not victim.alive():
                cluster.start_node(victim)


def test_a_typo_for_args_stops_make_before_it_runs_anything() -> None:
    typo = subprocess.run(["make", "-n", "compare", "ARG=--quick"], cwd=CHECKOUT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert typo.returncode != 0 and "unknown variable(s) ARG" in typo.stderr, typo.stderr
    assert "mqlab compare" not in typo.stdout
    right = subprocess.run(["make", "-n", "compare", "ARGS=--quick"], cwd=CHECKOUT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert right.returncode == 0 and "mqlab compare --quick" in right.stdout, right.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["broker"], ["broker", "up"], ["broker", "env"], ["broker", "kill"], ["compare"],
     ["worker"], ["send"]],
    ids=" ".join,
)  # fmt: skip
def test_help_fits_80_columns_and_is_written_for_users(argv: list[str]) -> None:
    result = _mqlab(*argv, "--help")
    assert result.returncode == 0, result.stderr
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert "This module" not in result.stdout and "``" not in result.stdout
    if argv == ["broker", "up"]:  # its own help, not `broker --help` again
        assert "--cluster" in result.stdout and "purge" not in result.stdout


def _words_kept(tables: list[RichTable], rows: list[list[str]]) -> bool:
    """Whether every word of every cell and header shows whole on one line of an 80-column
    terminal, and no line is wider."""
    console = Console(width=80, record=True)
    for table in tables:
        console.print(table)
    lines = console.export_text().splitlines()
    headers = [str(c.header) for t in tables for c in t.columns]
    cells = {word for row in [*rows, headers] for cell in row for word in cell.split()}
    return all(len(line) <= 80 for line in lines) and all(
        any(re.search(rf"(^|\s){re.escape(w)}(\s|$)", line) for line in lines) for w in cells
    )


def test_compare_tables_fit_80_columns_without_cutting_a_number() -> None:
    headers = [
        "implementation",
        "drain prefetch 1, msg/s",
        "drain prefetch 100, msg/s",
        "publish->finish p50, ms",
        "p99, ms",
        "workers",
        "RSS MiB",
        "lost / dup",
    ]
    rows = [
        [
            "dramatiq quorum/cluster",
            "1,412.3 (1,380-1,460)",
            "14,120.9",
            "12.34 (11.0-13.5)",
            "123.45",
            "4",
            "123.4",
            "0 / 0",
        ],
        ["pika classic/single", "1,412.3", "4,120.9", "2.34", "23.45", "1", "23.4", "0 / 12"],
    ]
    table = markdown.Table("Throughput", "", headers, rows)  # fmt: skip
    assert _words_kept(render(table), rows)
    # the lab's throughput table, 16 columns of long header words: as rich sized the columns
    # it cut "lab/observer", "makespan/ideal" and, in the third part, a column of figures
    wide = ["implementation", "publish", "publish lab/observer", "producer CPU, us/task"]
    wide += [f"{h}, prefetch {p}" for h in ("consume", "lab/observer") for p in (1, 100)]
    wide += [f"consumer CPU, us/task, prefetch {p}" for p in (1, 100)]
    wide += ["CPU lab/observer, prefetch 1", "broker CPU, us/task, prefetch 1"]
    wide += ["worker RSS after the drain", "makespan/ideal", "publish->finish p50, ms", "down"]
    many = [
        ["faststream-defaults (quorum/cluster)", "1,234 (1,100-1,300)", "1.01x", "123 (110-130)"]
        + ["1,412 (1,380-1,460) (0.85x bare)", "14,120 (12,000-15,000)", "0.99x", "1.02x"]
        + ["220 (200-240) (1.63x bare)", "48 (45-50)", "1.00x", "90 (80-100)", "45.2 MiB"]
        + ["1.23", "12.3 (11-13)", "0.42 s"]
    ]
    assert _words_kept(render(markdown.Table("Throughput", "", wide, many)), many)
    # control: rich's default table (overflow "ellipsis") cuts numbers ("1,41…") at 80 columns
    plain = RichTable(*headers)
    for row in rows:
        plain.add_row(*row)
    assert not _words_kept([plain], rows)


GUARDED = """
import runpy, socket, sys
connect = socket.socket.connect
def guarded(self, address, *rest):
    if isinstance(address, tuple) and address[1] == 5672:
        sys.stderr.write("reached port 5672\\n")
        sys.stderr.flush()
        import os
        os._exit(99)
    return connect(self, address, *rest)
socket.socket.connect = guarded
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
"""Runs ``python -m MODULE ARGS`` with every connect to port 5672 refused (exit 99): the test
of "no fallback" can never reach the system broker, even if a fallback came back."""

PROGRAMS = [
    f"{package}.{program}"
    for package in ("raw_pika", "celery_impl", "dramatiq_impl", "faststream_impl")
    for program in ("new_task", "worker", "send", "receive")
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("module", PROGRAMS)
def test_without_a_broker_every_program_stops_in_one_line(
    tmpdir_env: Path,  # noqa: F811  (no `broker up` record)
    single_node: Node,
    module: str,
) -> None:
    argv = [sys.executable, "-c", GUARDED, module]
    if module.endswith("new_task"):
        argv.append("fallback.")
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 78, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "mqlab broker up --detach" in lines[0] and "AMQP_URL" in lines[0], lines[0]
    # control: the same program given a private node's AMQP_URL gets past the settings (a
    # producer publishes; a worker or receiver is stopped once it is connected)
    env["AMQP_URL"] = single_node.amqp_url
    if module.endswith("new_task"):
        sent = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        return
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "onnected to 127.0.0.1:" in first, first + proc.stdout.read(2000)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("impl", impl_params("quorum"), indirect=True)
def test_a_workers_first_line_names_the_one_node_it_is_connected_to(
    cluster: Cluster, impl: Implementation
) -> None:
    """``AMQP_URL`` lists the three nodes; the worker's first line names the node it connected
    to (the first that answers), not the list. Control: the list rotated to start at another
    node, the line names that node."""
    for first in (cluster.nodes[1], cluster.nodes[2]):
        at = cluster.nodes.index(first)
        urls = ";".join(n.amqp_url for n in cluster.nodes[at:] + cluster.nodes[:at])
        command = impl.worker_command(WorkerSpec(name="first-line", amqp_url=urls))
        proc = subprocess.Popen(list(command.argv), env={**os.environ, **command.env},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
        finally:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        assert line.rstrip().endswith(f"connected to 127.0.0.1:{first.amqp_port}"), line
