"""A worker that cannot go on exits non-zero with one line, so a supervisor restarts it.

The case: the worker's user loses its access (password changed) and RabbitMQ closes its
connection. Reconnecting is then refused (403 ACCESS_REFUSED) and retrying cannot help: every
worker must exit with ``ExitCode.NOPERM`` (77, :mod:`shared.exit_codes`) within the test's
deadline. The negative control closes
the connection the same way without touching the password: the worker reconnects and serves.

The work queue deleted under a running worker (RabbitMQ sends basic.cancel): the worker exits
non-zero with one line, or consumes again once the queue is declared anew; it never stays
alive without a consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from shared.exit_codes import ExitCode
from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import (
    IMPLEMENTATIONS,
    StartWorker,
    assert_one_line_error,
    journal_rows,
    wait_for_finished,
)


@pytest.fixture
def user(broker: Node) -> Iterator[tuple[str, str]]:
    """A fresh user with full permissions on the vhost; deleted afterwards."""
    m = broker.management
    name, password = f"mqlabtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    vhost = quote(m.vhost, safe="")
    m.session.put(
        m._url(f"users/{name}"), json={"password": password, "tags": ""}, timeout=10
    ).raise_for_status()
    m.session.put(
        m._url(f"permissions/{vhost}/{name}"),
        json={"configure": ".*", "write": ".*", "read": ".*"},
        timeout=10,
    ).raise_for_status()
    yield name, password
    m.session.delete(m._url(f"users/{name}"), timeout=10)


def close_connections_of(broker: Node, user: str) -> int:
    """Close every connection of ``user`` (management API, ``DELETE /api/connections/<name>``)."""
    m = broker.management
    names = [c["name"] for c in m.api("connections") if c.get("user") == user]
    for name in names:
        m.session.delete(m._url(f"connections/{quote(name, safe='')}"), timeout=10)
    return len(names)


def user_url(broker: Node, name: str, password: str) -> str:
    host_part = broker.amqp_url.split("@", 1)[1]
    return f"amqp://{name}:{password}@{host_part}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("password_changed", [True, False], ids=["access-lost", "control"])
def test_a_worker_that_lost_its_access_exits_non_zero(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    user: tuple[str, str],
    password_changed: bool,
) -> None:
    name, password = user
    worker = start_worker(
        impl,
        "w1",
        amqp_url=user_url(broker, name, password),
        env={"MQLAB_RECONNECT_SECONDS": "20"},
    )
    if password_changed:
        m = broker.management
        m.session.put(
            m._url(f"users/{name}"), json={"password": uuid.uuid4().hex, "tags": ""}, timeout=10
        ).raise_for_status()
    wait_until(lambda: close_connections_of(broker, name) > 0, 30, what="its connection")

    if password_changed:
        code = worker.wait(180)
        assert code is not None, f"still running:\n{worker.output()[-2000:]}"
        # ACCESS_REFUSED on reconnecting: the table's code for "fix the permissions", not a
        # crash (1) or "retry later" (69), so a supervisor can tell them apart.
        assert code == ExitCode.NOPERM, f"exit {code}\n{worker.output()[-2000:]}"
    else:
        ids = impl.publish_work(["."])
        wait_for_finished(journal_path, ids, timeout=90)
        assert worker.alive(), worker.output()[-2000:]


QUEUE_DELETED_FLAKE = pytest.mark.flaky(
    reruns=1, only_rerun=[r"Failed: worker alive without a consumer"]
)
"""Celery's worker once (one full run in many, under load) showed no reaction to the
basic.cancel within the 30 s deadline and passed on its rerun; the cause (kombu's handling of
the cancel on a loaded machine, or the re-declared queue) is not found yet."""


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "impl",
    [
        pytest.param(impl, id=name, marks=[QUEUE_DELETED_FLAKE] if name == "celery" else [])
        for name, impl in IMPLEMENTATIONS.items()
    ],
)
def test_worker_whose_queue_is_deleted_does_not_hang(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Somebody deletes the work queue under a running worker (management UI, rabbitmqctl):
    RabbitMQ sends basic.cancel. The worker must either exit non-zero with one error line or
    consume again once a producer re-declares the queue (Dramatiq does). raw_pika ignored the
    cancel and stayed alive with no consumer: it never took another message, and said
    nothing."""
    worker = start_worker(impl, "w1")
    broker.management.delete_queue(impl.task_queue())
    ids = impl.publish_work(["after the delete."])  # the producer declares the queue again

    def settled() -> bool:
        done = {e.message_id for e in journal_rows(journal_path) if e.finished}
        return not worker.alive() or set(ids) <= done

    try:
        wait_until(settled, 30, what="the worker to exit or to take the new message")
    except TimeoutError:
        pytest.fail(f"worker alive without a consumer; output:\n{worker.output()}")
    if not worker.alive():
        assert_one_line_error(worker.popen.returncode, worker.output())
