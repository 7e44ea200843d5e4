"""Connecting and declaring: a broker that does not answer, speaks another protocol or refuses
a declare gives ONE line ``error: ...`` on stderr and a non-zero exit, never a traceback, and
the line names what went wrong (and never the password)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import amqp.exceptions
import pika
import pika.exceptions
import pytest

from shared import pika_errors
from shared.errors import BrokerUnreachable, MqlabError
from shared.impl import Implementation
from shared.pika_connection import Connected
from testbed.node import Node
from tests.helpers import assert_one_line_error, each_implementation, program_command, run_to_end


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a firewall, a wrong port
    on some other service): the AMQP handshake times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("program", ["new_task", "worker"])
@each_implementation()
def test_silent_server_is_a_one_line_error(
    impl: Implementation, program: str, silent_listener: int
) -> None:
    """pika raises AMQPConnectorStackTimeout (not an AMQPError) when the peer accepts TCP and
    never answers the AMQP handshake."""
    url = f"amqp://guest:guest@127.0.0.1:{silent_listener}/%2F"
    result = run_to_end(
        program_command(impl, program, url), {"AMQP_URL": url, "MQLAB_CONNECT_TIMEOUT": "1"}
    )
    line = assert_one_line_error(result.returncode, result.stderr)
    assert str(silent_listener) in line


@pytest.mark.parametrize("program", ["new_task", "worker"])
@each_implementation()
def test_amqps_to_a_plain_port_is_a_one_line_error(
    broker: Node, impl: Implementation, program: str
) -> None:
    """TLS against the plain AMQP listener: pika re-raises the bare ssl.SSLError."""
    url = broker.amqp_url.replace("amqp://", "amqps://")
    result = run_to_end(program_command(impl, program, url), {"AMQP_URL": url})
    assert_one_line_error(result.returncode, result.stderr)


# A new quorum queue declared on a cluster without a majority of its nodes: RabbitMQ 3.10 waits
# about 15 s, then closes the whole connection with 541 INTERNAL_ERROR. The programs said
# "cannot connect to RabbitMQ ... is AMQP_URL right?" (pika, Dramatiq) or printed a traceback
# (raw_pika.receive, the Celery worker and receiver). Reproduced by hand on `mqlab broker up
# --cluster` with two nodes SIGKILLed and MQLAB_QUEUE_PREFIX=fresh.; these check the mapping
# without a cluster.
NO_QUORUM = (
    "INTERNAL_ERROR - Cannot declare quorum queue 'fresh.hello' in vhost '/' on node "
    "'mqlab-1@localhost' with leader on node 'mqlab-1@localhost': cluster_not_formed"
)


def _pika_params() -> pika.URLParameters:
    return pika.URLParameters("amqp://u:p@127.0.0.1:1/%2F")


@pytest.mark.timeout(10)
def test_pika_connection_closed_with_a_reason_is_not_called_unreachable() -> None:
    closed = pika.exceptions.ConnectionClosedByBroker(541, NO_QUORUM)
    error = pika_errors.translate(closed, [_pika_params()], "fresh.hello", "declare")
    assert not isinstance(error, BrokerUnreachable), str(error)
    assert "541" in str(error) and "cluster_not_formed" in str(error), str(error)
    assert "cannot connect" not in str(error)
    # Negative control: a node that shuts down (320 CONNECTION_FORCED) is still a broker gone.
    gone = pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - shutdown")
    lost = pika_errors.translate(gone, [_pika_params()], "fresh.hello", "declare")
    assert isinstance(lost, BrokerUnreachable), str(lost)
    assert "320 CONNECTION_FORCED" in str(lost)


class _ClosingChannel:
    """A pika channel whose queue.declare ends the way RabbitMQ's close does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def queue_declare(self, **kwargs: object) -> None:
        raise self.error


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pika.exceptions.ConnectionClosedByBroker(541, NO_QUORUM), "541 INTERNAL_ERROR"),
        # Negative control: the 406 path that worked before gives its own message.
        (
            pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg"),
            "already exists with other arguments",
        ),
    ],
    ids=["541", "406"],
)
def test_pika_receive_reports_a_refused_declare_in_one_line(
    monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    import raw_pika.receive

    connection = SimpleNamespace(channel=lambda: _ClosingChannel(error))
    monkeypatch.setattr(
        raw_pika.receive, "connect", lambda: Connected(connection, [_pika_params()])
    )
    monkeypatch.setattr("sys.argv", ["python -m raw_pika.receive"])  # not pytest's own argv
    with pytest.raises(MqlabError) as raised:
        raw_pika.receive.main()
    assert expected in str(raised.value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (amqp.exceptions.InternalError(NO_QUORUM, reply_code=541), "541 INTERNAL_ERROR"),
        # Negative control: the 406 path that worked before gives its own message.
        (
            amqp.exceptions.PreconditionFailed("PRECONDITION_FAILED", reply_code=406),
            "already exists with other arguments",
        ),
    ],
    ids=["541", "406"],
)
def test_celery_declare_reports_a_refused_declare_in_one_line(
    error: Exception, expected: str
) -> None:
    from celery_impl import broker as celery_settings

    class Queue:
        name = "fresh.celery.hello"

        def __call__(self, channel: object) -> Queue:
            return self

        def declare(self) -> None:
            raise error

    conn = SimpleNamespace(
        channel=lambda: SimpleNamespace(is_open=False), userid="u", virtual_host="/"
    )
    with pytest.raises(MqlabError) as raised:
        celery_settings.declare(conn, Queue())  # type: ignore[arg-type]
    assert expected in str(raised.value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "url",
    ["amqp://u:secret@[::1:1/%2F", "amqp://u:secret@127.0.0.1:99999/%2F"],
    ids=["broken-ipv6-host", "control-bad-port"],
)
def test_a_bad_amqp_url_is_shown_without_its_password(url: str) -> None:
    """AMQP_URL='amqp://u:secret@[::1:1/%2F' (a broken IPv6 host): the one-line error
    printed the password, since urlparse raised before the password was masked. Control: a
    URL that parses (bad port) was already shown as u:**@."""
    from shared import settings as shared_settings

    with pytest.raises(MqlabError) as raised:
        shared_settings.check_amqp_url(url)
    assert "secret" not in str(raised.value) and "u:**@" in str(raised.value)
