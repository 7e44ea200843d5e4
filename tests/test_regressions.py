"""Regressions found by adversarial testing. Each failed before its fix.

Standard under test: bad input or a broken environment gives ONE line
``error: ...`` on stderr, a non-zero exit, no traceback, and loses nothing already accepted.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import amqp.exceptions
import pika
import pika.exceptions
import pytest

from shared import journal, pika_errors
from shared.errors import BrokerUnreachable, MqlabError, PublishRefused, unconfirmed
from shared.impl import Command, Implementation, WorkerSpec
from shared.journal import Journal
from shared.producer import BaseProducer
from testbed import registry
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.conftest import StartWorker
from tests.helpers import run_to_end

IMPLS = registry.available()
PROGRAMS = ["new_task", "worker", "send", "receive"]


def _command(impl: Implementation, program: str, url: str) -> Command:
    if program == "new_task":
        return impl.new_task_command(["x"])
    if program == "worker":
        return impl.worker_command(WorkerSpec(name="w", amqp_url=url))
    if program == "send":
        return impl.send_command("x")
    return impl.receive_command()


def _run(command: Command, env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    result = run_to_end(command, env, timeout)
    return result.returncode, result.stderr


def _assert_one_line_error(code: int, stderr: str) -> str:
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr
    # mqlab's "error: ..." (shared.cli.run) or argparse's "prog: error: ..." after the usage.
    errors = [
        line for line in stderr.splitlines() if line.startswith("error: ") or ": error: " in line
    ]
    assert len(errors) == 1, stderr
    return errors[0]


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


# -- 1. connection failures that escape pika_errors.translate as tracebacks -------------------


@pytest.mark.parametrize("program", ["new_task", "worker"])
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_silent_server_is_a_one_line_error(
    impl: Implementation, program: str, silent_listener: int
) -> None:
    """pika raises AMQPConnectorStackTimeout (not an AMQPError) when the peer accepts TCP and
    never answers the AMQP handshake."""
    url = f"amqp://guest:guest@127.0.0.1:{silent_listener}/%2F"
    code, stderr = _run(
        _command(impl, program, url), {"AMQP_URL": url, "MQLAB_CONNECT_TIMEOUT": "1"}
    )
    line = _assert_one_line_error(code, stderr)
    assert str(silent_listener) in line


@pytest.mark.parametrize("program", ["new_task", "worker"])
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_amqps_to_a_plain_port_is_a_one_line_error(
    broker: Node, impl: Implementation, program: str
) -> None:
    """TLS against the plain AMQP listener: pika re-raises the bare ssl.SSLError."""
    url = broker.amqp_url.replace("amqp://", "amqps://")
    code, stderr = _run(_command(impl, program, url), {"AMQP_URL": url})
    _assert_one_line_error(code, stderr)


# -- 2. unresolvable hosts, unparseable URLs and settings, out-of-range worker options: in
# tests/test_bad_input_corpus.py (every program, every case) --------------------------------


def test_pika_worker_refuses_negative_prefetch(broker: Node, tmp_path: Path) -> None:
    """raw_pika reads prefetch -1 as "unlimited" (no basic.qos) without a word; the Dramatiq
    worker refuses it."""
    impl = registry.get("pika")
    spec = WorkerSpec(name="w", amqp_url=broker.amqp_url, prefetch=-1)
    with GroupProcess(impl.worker_command(spec), log_path=tmp_path / "w.log") as worker:
        code = worker.wait(timeout=15)
        output = worker.output()
    if code is None:
        pytest.fail("worker accepted --prefetch -1 and ran as unlimited")
    assert code != 0 and "Traceback" not in output, output


def test_pika_new_task_refuses_negative_count(broker: Node) -> None:
    """`--count -5` publishes nothing and exits 0; the Dramatiq producer refuses it."""
    impl = registry.get("pika")
    code, stderr = _run(impl.new_task_command(["x"], count=-5), {})
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr


def test_pika_new_task_with_non_utf8_argument(broker: Node) -> None:
    """A body from a Latin-1 terminal: argv holds a lone surrogate, body.encode() raises
    UnicodeEncodeError (traceback). The Dramatiq producer sends it."""
    impl = registry.get("pika")
    command = impl.new_task_command([os.fsdecode(b"caf\xe9")])
    result = subprocess.run(
        [os.fsencode(a) for a in command.argv], capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in result.stderr, result.stderr


# -- 3. the broker dies under a running program ------------------------------------------------


@pytest.mark.destructive
@pytest.mark.timeout(120)
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_producer_reports_a_broker_crash_in_one_line(
    killable_broker: Node, impl: Implementation, tmp_path: Path
) -> None:
    """Node SIGKILLed while new_task --count N publishes under confirms: a non-zero exit and
    one error line (raw_pika: StreamLostError traceback), and every message the producer had
    been confirmed is still there after the restart (nothing lost silently)."""
    broker = killable_broker
    with GroupProcess(
        impl.new_task_command(["x"], count=200_000), log_path=tmp_path / "producer.log"
    ) as producer:
        try:
            wait_until(
                lambda: _ready(broker, impl.task_queue()) > 50,
                30,
                what="publishing to be under way",
            )
            broker.kill()
            code = producer.wait(timeout=60)
        finally:
            broker.start()
        output = producer.output()
    assert code not in (None, 0), output
    _assert_one_line_error(code or 0, output)


def _ready(broker: Node, queue: str) -> int:
    """Messages ready in ``queue`` (0 while it does not exist yet)."""
    stats = broker.management.queue(queue)
    return stats.ready if stats is not None else 0


@pytest.mark.destructive
@pytest.mark.timeout(150)
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_worker_survives_or_reports_a_broker_crash(
    killable_broker: Node, impl: Implementation, start_worker: StartWorker
) -> None:
    """After the broker is SIGKILLed and restarted, a worker either reconnects and consumes
    again (Dramatiq does) or has exited non-zero with one error line. raw_pika dies with a
    StreamLostError traceback."""
    broker = killable_broker
    worker = start_worker(impl, "w1")
    broker.sync_metadata()  # the queue the worker just declared is on disk (Node.sync_metadata)
    try:
        broker.kill()
        worker.wait(timeout=5)
    finally:
        broker.start()
    if worker.alive():
        wait_until(
            lambda: broker.management.consumers_of(impl.task_queue(), worker.pids()),
            60,
            what="the worker to consume again",
        )
        return
    _assert_one_line_error(worker.popen.returncode, worker.output())


# -- 4. the journal under concurrency ----------------------------------------------------------


def _open_and_write(
    path: str, barrier: threading.Barrier, results: multiprocessing.queues.Queue[str]
) -> None:
    barrier.wait()
    try:
        journal = Journal(path)
        row = journal.started(
            message_id=str(os.getpid()),
            task="work",
            impl="x",
            worker="w",
            redelivered=False,
            published_at=0.0,
        )
        journal.finished(row)
        journal.close()
        results.put("ok")
    except Exception as e:  # noqa: BLE001
        results.put(f"{type(e).__name__}: {e}")


@pytest.mark.timeout(120)
def test_many_processes_open_a_fresh_journal_at_once(tmp_path: Path) -> None:
    """Workers that open a not-yet-existing journal at the same moment: `PRAGMA journal_mode=WAL`
    fails with "database is locked" at once (SQLite does not call the busy handler for it),
    despite the 30 s timeout. About one trial in five with four processes failed."""
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    n = 6
    for trial in range(25):
        path = str(tmp_path / f"j{trial}.db")
        barrier = ctx.Barrier(n)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_open_and_write, args=(path, barrier, results)) for _ in range(n)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(10)
        failures += [r for r in outcomes if r != "ok"]
    assert failures == [], failures[:3]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_worker_whose_queue_is_deleted_does_not_hang(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    """Somebody deletes the work queue under a running worker (management UI, rabbitmqctl):
    RabbitMQ sends basic.cancel. The worker must either exit non-zero with one error line or
    consume again once a producer re-declares the queue (Dramatiq does). raw_pika ignores the
    cancel and stays alive with no consumer: it never takes another message, and says
    nothing."""
    worker = start_worker(impl, "w1")
    broker.management.delete_queue(impl.task_queue())
    ids = impl.publish_work(["after the delete."])  # the producer declares the queue again

    def settled() -> bool:
        done = {e.message_id for e in journal.read(journal_path) if e.finished}
        return not worker.alive() or set(ids) <= done

    try:
        wait_until(settled, 30, what="the worker to exit or to take the new message")
    except TimeoutError:
        pytest.fail(f"worker alive without a consumer; output:\n{worker.output()}")
    if not worker.alive():
        _assert_one_line_error(worker.popen.returncode, worker.output())


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
    monkeypatch.setattr(raw_pika.receive, "connect", lambda: (connection, [_pika_params()]))
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


UNREACHABLE = {"AMQP_URL": "amqp://u:p@127.0.0.1:1/%2F", "MQLAB_CONNECT_TIMEOUT": "2"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_new_task_refuses_a_count_it_cannot_hold(impl: Implementation) -> None:
    """`new_task --count 10000000000` (a typo) built ten billion numbered bodies in memory
    before the first publish: no output, memory growing until the OOM killer. Refused in one
    line at once. Control: a small count gets past the check to the (unreachable) broker."""
    code, stderr = _run(impl.new_task_command(["x"], count=10**10), UNREACHABLE, timeout=15)
    assert "--count must be 0 to" in _assert_one_line_error(code, stderr)
    code, stderr = _run(impl.new_task_command(["x"], count=2), UNREACHABLE, timeout=15)
    assert "cannot connect" in _assert_one_line_error(code, stderr)


class _NackingProducer(BaseProducer[str]):
    """Confirms ``ok`` messages, then the broker nacks one (as a quorum queue whose leader was
    just killed does)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok

    def _message(self, body: str) -> str:
        return body

    def _ready(self) -> None:
        pass

    def _publish_one(self, message: str, body: str) -> None:
        if self.ok == 0:
            raise PublishRefused("broker refused (nacked) a message for 'task_queue'")
        self.ok -= 1

    def _classify(self, error: Exception) -> None:
        return None

    def close(self) -> None:
        pass

    def _drop(self) -> None:
        pass


@pytest.mark.timeout(10)
def test_a_nack_mid_batch_says_how_many_were_confirmed() -> None:
    """`new_task --count 3000` on a cluster whose queue leader was SIGKILLed mid-run: 690 were
    confirmed, then one nack, and the one line said only "broker refused (nacked) a message":
    the user could not tell what was sent. Control: a nack of the first message has no count."""
    with pytest.raises(PublishRefused, match=r"\(2 of 5 messages were confirmed before\)"):
        _NackingProducer(ok=2).publish_all(["m"] * 5)
    with pytest.raises(PublishRefused) as first:
        _NackingProducer(ok=0).publish_all(["m"] * 5)
    assert "confirmed before" not in str(first.value)


@pytest.mark.timeout(10)
def test_an_unconfirmed_publish_says_it_may_still_arrive() -> None:
    """Two of three nodes SIGKILLed: the producer's one line said the unconfirmed message was
    "not counted as sent", yet once the nodes returned it was in the queue (3 -> 4 messages),
    so a user who sent it again got it twice. The line now says it may still be stored."""
    text = str(unconfirmed(5, 2, 10))
    assert "did not confirm message 3 of 10" in text and "2 were confirmed" in text
    assert "message 3 may still be stored" in text


@pytest.mark.destructive
@pytest.mark.timeout(150)
@pytest.mark.parametrize("impl", list(IMPLS.values()), ids=list(IMPLS))
def test_receiver_survives_or_reports_a_broker_crash(
    killable_broker: Node, impl: Implementation, tmp_path: Path
) -> None:
    """Tutorial 1's receiver when its broker is SIGKILLed: it keeps running (Celery and
    Dramatiq retry) or exits non-zero with one error line. raw_pika.receive died with a
    StreamLostError traceback."""
    broker = killable_broker
    with GroupProcess(impl.receive_command(), log_path=tmp_path / "receive.log") as receiver:
        wait_until(
            lambda: broker.management.consumers_of(impl.hello_queue(), receiver.pids()),
            30,
            what="the receiver to consume",
        )
        broker.sync_metadata()
        try:
            broker.kill()
            code = receiver.wait(timeout=5)
        finally:
            broker.start()
        if code is not None:
            _assert_one_line_error(code, receiver.output())


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


@pytest.mark.destructive
@pytest.mark.timeout(150)
@pytest.mark.parametrize("broker_down", [True, False], ids=["reconnecting", "control-connected"])
def test_pika_worker_stopped_while_reconnecting_exits_0(
    killable_broker: Node, start_worker: StartWorker, broker_down: bool
) -> None:
    """SIGTERM (systemctl stop) to the pika worker while it retries a lost broker: it exited
    130, as if interrupted, with no " stopped" line, where Celery and Dramatiq exit 0; a
    supervisor counts that as a failure. Control: SIGTERM while connected exits 0."""
    broker = killable_broker
    worker = start_worker(registry.get("pika"), "w1")
    broker.sync_metadata()
    try:
        if broker_down:
            broker.kill()
            wait_until(lambda: "reconnecting" in worker.output(), 30, what="the worker to retry")
        os.killpg(worker.popen.pid, signal.SIGTERM)
        code = worker.wait(timeout=15)
    finally:
        if broker_down:
            broker.start()
    assert code == 0, worker.output()
    assert "w1 stopped" in worker.output()
