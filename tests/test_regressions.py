"""Regressions found by adversarial testing. Each failed before its fix.

Standard under test: bad input or a broken environment gives ONE line
``error: ...`` on stderr, a non-zero exit, no traceback, and loses nothing already accepted.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import journal
from shared.impl import Command, Implementation, WorkerSpec
from shared.journal import Journal
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
