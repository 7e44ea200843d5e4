"""``mqlab broker kill NODE`` and ``mqlab broker start NODE``: one node of the
``mqlab broker up --cluster`` cluster killed (SIGKILL, a crash) and started again with its data.

The ``broker up`` process owns the nodes (their environment, their process handles), so
``broker start`` asks it, through a request file in the record's private directory
(:func:`shared.broker_up.private_dir`), and it starts the node (:func:`serve_start_requests`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psutil

from lab.commands.usage import UsageError, console
from shared import broker_up as up_record
from shared.errors import MqlabError
from testbed.cluster import Cluster
from testbed.process import wait_until


def node_pid(pid_file: str | None) -> int | None:
    """The OS pid a node wrote to its pid file (``RABBITMQ_PID_FILE``), if it runs."""
    if not pid_file:
        return None
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _running(pid) else None


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by ``broker up``, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _start_request(node_name: str) -> Path:
    """The file ``broker start NODE`` writes for the ``broker up`` process, in its private
    directory (:func:`shared.broker_up.private_dir`)."""
    directory = up_record.private_dir(create=True)
    assert directory is not None
    return directory / f"start-{node_name}"


def serve_start_requests(cluster: Cluster) -> None:
    """In the ``broker up`` process: start each node that ``broker start NODE`` asked for
    (:meth:`testbed.cluster.Cluster.start_node`: same name, ports and data, so it rejoins);
    the request file is removed once the node is back, or replaced by ``.failed`` holding why.
    """
    for n in cluster.nodes:
        request = _start_request(n.node)
        alive = n.alive()  # also reaps a node's process killed by 'broker kill'
        if not request.exists():
            continue
        try:
            if not alive:
                cluster.start_node(n)
        except (RuntimeError, TimeoutError) as e:
            request.with_suffix(".failed").write_text(str(e).splitlines()[0])
        request.unlink(missing_ok=True)


def _cluster_node(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``broker up`` record and its node called ``name``: its number (``2``), its name as
    ``broker status`` shows it (``mqlab-1a2b3c-2``) or the full ``mqlab-1a2b3c-2@localhost``.

    Raises:
        UsageError: no ``broker up --cluster`` runs, or it has no such node.
    """
    state = up_record.read()
    if state is None or not state.get("nodes"):
        raise UsageError("no cluster is running; start one: mqlab broker up --cluster --detach")
    nodes: list[dict[str, str]] = state["nodes"]
    for n in nodes:
        short = n["name"].split("@")[0]
        if name in (n["name"], short, short.rsplit("-", 1)[-1]):
            return state, n
    known = ", ".join(n["name"].split("@")[0] for n in nodes)
    raise UsageError(f"no node {name!r} in the cluster; its nodes: {known}")


def broker_kill(name: str) -> int:
    """SIGKILL one node of the ``broker up --cluster`` cluster (a crash: no clean shutdown),
    the pid ``broker status`` shows; its data stays, for ``broker start NODE``.

    Raises:
        UsageError: no such node (:func:`_cluster_node`).
        MqlabError: the node is not running.
    """
    _state, n = _cluster_node(name)
    pid = node_pid(n.get("pid_file"))
    if pid is None:
        raise MqlabError(f"node {n['name']} is not running; start it: mqlab broker start {name}")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _running(pid), 30, interval=0.1, what=f"pid {pid} to exit")
    console.print(f"killed {n['name']} (pid {pid}); start it again: mqlab broker start {name}")
    return 0


def broker_start(name: str) -> int:
    """Start a killed node of the ``broker up --cluster`` cluster again, with its data, and
    wait until it has rejoined (the ``broker up`` process starts it: it owns the nodes).

    Raises:
        UsageError: no such node (:func:`_cluster_node`).
        MqlabError: it did not start (the node's own reason) or not within 180 s.
    """
    _state, n = _cluster_node(name)
    if node_pid(n.get("pid_file")) is not None:
        console.print(f"{n['name']} is already running")
        return 0
    request = _start_request(n["name"])
    failed = request.with_suffix(".failed")
    failed.unlink(missing_ok=True)
    request.write_text("")
    try:
        wait_until(lambda: not request.exists(), 180, interval=0.5, what=f"{n['name']} to start")
    except TimeoutError as e:
        raise MqlabError(str(e)) from None
    if failed.exists():
        raise MqlabError(f"{n['name']} did not start: {failed.read_text()}")
    console.print(f"started {n['name']} (pid {node_pid(n.get('pid_file'))}); it rejoined")
    return 0
