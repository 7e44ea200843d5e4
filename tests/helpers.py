"""What the tests share besides fixtures: the implementations and topologies they run on, the
test bed's repairs between tests, waiting for a worker's consumer, reading the execution
journal, and running a program to its end. ``conftest.py`` holds the fixtures and hooks only."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import pytest

from shared import journal
from shared.impl import Command, Implementation, WorkerSpec
from shared.journal import Execution
from testbed import registry
from testbed.cluster import Cluster
from testbed.local_node import LocalNode
from testbed.node import Node
from testbed.process import GroupProcess, wait_until

DOT_SECONDS = 0.1
"""Seconds of work per ``.`` in the tests (the tutorial's 1 s would make the suite crawl)."""

WORKER_READY_TIMEOUT = 30.0
"""Seconds a worker may take from start to a registered consumer."""

IMPLEMENTATIONS: dict[str, Implementation] = registry.available()
"""Every implementation importable here, by name (``pika``, ``celery``, ``dramatiq``): the one
list every test file parametrises over."""

TOPOLOGIES = ("classic", "quorum")
"""``classic``: one node, classic queues; ``quorum``: the 3-node cluster, quorum queues."""

PROGRAMS = ("new_task", "worker", "send", "receive")
"""Each implementation's four programs (tutorials 1 and 2)."""

StartWorker = Callable[..., GroupProcess]
"""The ``start_worker`` fixture's factory (its signature is in the fixture's docstring)."""


def each_implementation() -> pytest.MarkDecorator:
    """``@each_implementation()``: parametrise a test's ``impl`` argument over
    :data:`IMPLEMENTATIONS` (ids ``pika``, ``celery``, ``dramatiq``), without a topology."""
    return pytest.mark.parametrize(
        "impl", list(IMPLEMENTATIONS.values()), ids=list(IMPLEMENTATIONS)
    )


def impl_params(
    *topologies: str,
    where: Callable[[Implementation], bool] = lambda _impl: True,
    marks: Mapping[str, pytest.MarkDecorator] | None = None,
) -> list[pytest.param]:  # type: ignore[valid-type]
    """``impl`` fixture parameters: each implementation (for which ``where`` holds) on each of
    ``topologies``, ids ``pika-quorum``; ``marks`` adds a mark to the parameters of those ids
    (``{"celery-quorum": pytest.mark.flaky(...)}``)."""
    marks = marks or {}
    return [
        pytest.param(
            (name, topology),
            id=f"{name}-{topology}",
            marks=[marks[f"{name}-{topology}"]] if f"{name}-{topology}" in marks else [],
        )
        for name, implementation in IMPLEMENTATIONS.items()
        if where(implementation)
        for topology in topologies
    ]


def external() -> bool:
    """Whether the run uses somebody else's broker (``AMQP_URL`` set, provider auto/external)."""
    return bool(os.environ.get("AMQP_URL")) and os.environ.get("MQLAB_BROKER") in (
        None,
        "",
        "auto",
        "external",
    )


def topology_of(item: pytest.Item | pytest.FixtureRequest) -> str:
    """The topology in a test's ``impl`` parameter (``classic`` for a test without one)."""
    node = item.node if isinstance(item, pytest.FixtureRequest) else item
    callspec = getattr(node, "callspec", None)
    param = callspec.params.get("impl") if callspec is not None else None
    return str(param[1]) if isinstance(param, tuple) else "classic"


def restoring_env(values: dict[str, str]) -> Callable[[], None]:
    """Set ``values`` in ``os.environ``; return the function that puts the old values back."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    return restore


def heal(cluster: Cluster) -> None:
    """Give the next test a cluster that serves: start nodes a test before left down, and if
    its quorum queues still have no leader (seen after a whole-cluster restart on a loaded
    machine) form it anew, empty, rather than fail every test after it."""
    try:
        if not all(n.alive() for n in cluster.nodes):
            cluster.start()
        cluster.await_quorum_queues(timeout=60)
    except (TimeoutError, RuntimeError) as e:
        print(f"\ncluster did not settle ({e}); forming it anew")
        cluster.reset()


def restart_nodes_without_statistics(node: Node) -> list[str]:
    """Restart (SIGKILL, start; data kept) each private node whose management agent is down
    (:meth:`~testbed.management.Management.agent_failed`): the tests read consumers and queue
    figures from it. Returns the names of the nodes restarted."""
    members = node.nodes if isinstance(node, Cluster) else [node]
    restarted = []
    for member in members:
        if not isinstance(member, LocalNode) or not member.alive():
            continue
        if member.management.agent_failed():
            print(f"\nthe management agent of {member.node} is down; restarting the node")
            if isinstance(node, Cluster):
                node.kill_node(member)
                node.start_node(member)
            else:
                member.kill()
                member.start()
            restarted.append(member.node)
    return restarted


def wait_for_consumer(broker: Node, impl: Implementation, proc: GroupProcess) -> None:
    """Wait until the worker ``proc`` has a consumer on ``impl``'s work queue (matched by its
    connection's port through the management API).

    Raises:
        AssertionError: the worker process exited first (its output is in the message).
        TimeoutError: not within :data:`WORKER_READY_TIMEOUT`.
    """
    queue = impl.task_queue()

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited with {proc.popen.returncode}:\n{proc.output()}")
        return bool(broker.management.consumers_of(queue, proc.pids()))

    wait_until(ready, WORKER_READY_TIMEOUT, interval=0.1, what=f"a consumer on {queue}")


def journal_rows(journal_path: str) -> list[Execution]:
    """Every execution recorded so far."""
    return journal.read(journal_path)


def wait_for_finished(journal_path: str, ids: Iterable[str], timeout: float) -> list[Execution]:
    """Wait until every message_id in ``ids`` has a finished execution; return all rows.

    Raises:
        TimeoutError: some ids were not finished in time (the message says how many).
    """
    wanted = set(ids)
    missing: list[int] = [len(wanted)]

    def done() -> bool:
        finished = {e.message_id for e in journal.read(journal_path) if e.finished}
        missing[0] = len(wanted - finished)
        return missing[0] == 0

    try:
        wait_until(done, timeout, interval=0.05, what="every message to be executed")
    except TimeoutError as e:
        raise TimeoutError(f"{e}: {missing[0]} of {len(wanted)} not finished") from None
    return journal.read(journal_path)


def finished_by_worker(rows: Iterable[Execution]) -> Counter[str]:
    """How many finished executions each worker recorded."""
    return Counter(e.worker for e in rows if e.finished)


def executions_per_message(rows: Iterable[Execution]) -> Counter[str]:
    """How many executions (started) each message_id had."""
    return Counter(e.message_id for e in rows)


def program_command(impl: Implementation, program: str, url: str) -> Command:
    """The command line of ``impl``'s ``program`` (one of :data:`PROGRAMS`) with a minimal
    argument; ``url`` is the worker's broker (the others read ``AMQP_URL``)."""
    if program == "new_task":
        return impl.new_task_command(["x"])
    if program == "worker":
        return impl.worker_command(WorkerSpec(name="w", amqp_url=url))
    if program == "send":
        return impl.send_command("x")
    return impl.receive_command()


def run_to_end(
    command: Command, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (plus ``env``) to its end in its own process group.

    Raises:
        AssertionError: it did not exit within ``timeout`` seconds ("within seconds" is the
            promise for bad input); the whole group, forked children included, is killed first.
    """
    proc = subprocess.Popen(
        list(command.argv),
        env={**os.environ, **command.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{command.argv} still running after {timeout} s:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_line_error(code: int, stderr: str) -> str:
    """Assert the house standard for a failure: a non-zero exit ``code``, no traceback, and
    exactly one error line in ``stderr`` (mqlab's ``error: ...`` from ``shared.cli.run``, or
    argparse's ``prog: error: ...`` after the usage). Returns that line."""
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr
    errors = [
        line for line in stderr.splitlines() if line.startswith("error: ") or ": error: " in line
    ]
    assert len(errors) == 1, stderr
    return errors[0]
