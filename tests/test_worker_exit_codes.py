"""A worker that cannot go on exits non-zero with one line, so a supervisor restarts it.

The case: the worker's user loses its access (password changed) and RabbitMQ closes its
connection. Reconnecting is then refused (403 ACCESS_REFUSED) and retrying cannot help: every
worker must exit with ``ExitCode.NOPERM`` (77, :mod:`shared.exit_codes`) within the test's
deadline. The negative control closes
the connection the same way without touching the password: the worker reconnects and serves.
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
from tests.conftest import StartWorker
from tests.helpers import wait_for_finished


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
