"""Fixtures: the only seam between the conformance suite and the broker.

* ``broker`` — one private RabbitMQ node for the session (``MQLAB_BROKER``, default ``auto``).
* ``impl`` — every available implementation; test ids ``pika``, ``celery``, ``dramatiq``.
* ``start_worker`` — starts worker processes in their own process groups, killed at teardown.
* autouse: every implementation's queues are deleted before each test, so each starts empty.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.impl import Implementation, WorkerSpec
from testbed import registry
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from testbed.provider import provision

DOT_SECONDS = 0.1
"""Seconds of work per ``.`` in the tests (the tutorial's 1 s would make the suite crawl)."""

WORKER_READY_TIMEOUT = 30.0
"""Seconds a worker may take from start to a registered consumer."""

IMPLEMENTATIONS = registry.available()


@pytest.fixture(scope="session")
def broker() -> Iterator[Node]:
    """A RabbitMQ node for the whole session; private (killable) unless AMQP_URL is set."""
    external = bool(os.environ.get("AMQP_URL")) and os.environ.get("MQLAB_BROKER") in (
        None,
        "",
        "auto",
        "external",
    )
    saved = {k: os.environ.get(k) for k in ("AMQP_URL", "MQLAB_QUEUE_PREFIX")}
    with provision() as b:
        print(f"\n{b.describe()}")
        os.environ["AMQP_URL"] = b.amqp_url
        if external:
            # Somebody else's broker: keep to our own queue names.
            os.environ["MQLAB_QUEUE_PREFIX"] = f"mqlabtest-{uuid.uuid4().hex[:8]}."
        try:
            yield b
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(params=list(IMPLEMENTATIONS), ids=list(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each available implementation in turn."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def queue_type() -> str:
    """The queue type a test declares its queues with (``MQLAB_QUEUE_TYPE``): ``classic``
    unless the test parametrises ``queue_type`` itself (a topology fixture may provide it)."""
    return os.environ.get("MQLAB_QUEUE_TYPE") or "classic"


@pytest.fixture
def killable_broker(broker: Node) -> Node:
    """The session broker, if this provider can SIGKILL and restart it; otherwise skip."""
    if not broker.can_kill:
        pytest.skip(
            f"needs a broker mqlab can kill and restart; the {broker.provider} provider cannot "
            "(unset AMQP_URL, or MQLAB_BROKER=local or docker)"
        )
    return broker


@pytest.fixture(autouse=True)
def _empty_queues(request: pytest.FixtureRequest) -> None:
    """Delete every implementation's queues before each test that uses the broker."""
    if "broker" not in request.fixturenames:
        return
    b: Node = request.getfixturevalue("broker")
    for implementation in IMPLEMENTATIONS.values():
        for queue in implementation.queues():
            b.management.delete_queue(queue)


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    """Path of a fresh execution journal for this test."""
    return str(tmp_path / "journal.db")


StartWorker = Callable[..., GroupProcess]


@pytest.fixture
def start_worker(broker: Node, journal_path: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Factory: ``start_worker(impl, name="w1", prefetch=1, concurrency=1, slowdown=1.0,
    early_ack=False, env=None, wait=True, amqp_url=None)`` starts a worker process and (with
    ``wait``) returns once its consumer is registered on the work queue. Every worker is
    SIGKILLed (whole group) at teardown.
    """
    started: list[GroupProcess] = []

    def start(
        impl: Implementation,
        name: str = "w1",
        *,
        prefetch: int = 1,
        concurrency: int = 1,
        slowdown: float = 1.0,
        early_ack: bool = False,
        env: dict[str, str] | None = None,
        wait: bool = True,
        amqp_url: str | None = None,
    ) -> GroupProcess:
        spec = WorkerSpec(
            name=name,
            prefetch=prefetch,
            concurrency=concurrency,
            slowdown=slowdown,
            journal=journal_path,
            amqp_url=amqp_url or broker.amqp_url,
            dot_seconds=DOT_SECONDS,
            early_ack=early_ack,
            env=env or {},
        )
        proc = GroupProcess(impl.worker_command(spec), log_path=tmp_path / f"{name}.log")
        started.append(proc)
        if wait:
            wait_for_consumer(broker, impl, proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


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
