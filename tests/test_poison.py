"""Poison messages and crash loops: dead-lettering every processing fault, and the quorum
queue's delivery limit.

* Every processing fault parks the message in the implementation's dead-letter queue
  (``<queue>.dead``; Dramatiq's ``.XQ``) with its body and headers intact, after a bounded
  number of attempts (none for what can never succeed); the messages before and after it run
  exactly once and the worker lives on. A bad contract header never costs a message its work.
* A message that kills its worker every time: on quorum queues RabbitMQ dead-letters it after
  ``MQLAB_DELIVERY_LIMIT`` redeliveries (``x-delivery-limit``) and the messages behind it flow;
  on classic queues (no delivery count) it comes back without bound: the negative control.

The queue type comes from the ``queue_type`` fixture (``classic`` unless parametrised).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest

from shared import poison, tasks
from shared.impl import Implementation
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import StartWorker, executions_per_message, journal_rows, wait_for_finished
from tests.poison_messages import (
    KIND_HEADER,
    RAW_MESSAGES,
    Parked,
    Raw,
    publish_raw,
    read_queue,
)

DELIVERY_LIMIT = 2
"""``MQLAB_DELIVERY_LIMIT`` in the crash-loop tests (small: every delivery costs a restart)."""


def _env(queue_type: str, **more: str) -> dict[str, str]:
    return {"MQLAB_QUEUE_TYPE": queue_type, **more}


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch, queue_type: str) -> str:
    """Make this test's producers declare queues of ``queue_type`` (workers get it in env)."""
    monkeypatch.setenv("MQLAB_QUEUE_TYPE", queue_type)
    monkeypatch.setenv("MQLAB_DELIVERY_LIMIT", str(DELIVERY_LIMIT))
    return queue_type


@pytest.mark.timeout(240)
def test_every_processing_fault_parks_the_message(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    typed: str,
) -> None:
    """One worker, stdout ASCII-only, is fed good messages between poison ones of every kind
    this implementation can receive. Parked: each poison message, once, in the dead-letter
    queue, body and headers as sent, after 0 attempts (can never succeed) or
    :data:`~shared.poison.MAX_ATTEMPTS` (a task that keeps raising, whatever the message says
    about its own retries). Executed once: every good message, the raw control message (so the
    raw messages are well-formed apart from their fault), and messages with a bad contract
    header or a body stdout cannot encode. The worker is alive at the end."""
    worker = start_worker(impl, "w1", env=_env(typed, PYTHONIOENCODING="ascii"))
    raws = RAW_MESSAGES[impl.name](impl.task_queue())
    good: list[str] = impl.publish_work(["before", "cpu **"])
    failing = impl.publish_work([f"keeps failing {tasks.FAIL_MARKER}"])
    for raw in raws:
        publish_raw(broker.amqp_url, impl.task_queue(), [raw])
        good += impl.publish_work([f"after {raw.kind}"])

    rows = wait_for_finished(journal_path, good, timeout=120)
    must_park = [r for r in raws if r.parked]
    dlq = impl.dead_letter_queue()
    broker.management.wait_for_queue(dlq, 60, ready=len(must_park) + 1)
    rows = journal_rows(journal_path)
    runs = executions_per_message(rows)

    assert all(runs[i] == 1 for i in good), "a good message ran other than once"
    assert runs[failing[0]] == poison.MAX_ATTEMPTS
    for raw in raws:
        assert runs[raw.message_id] == raw.attempts, f"{raw.kind}: {runs[raw.message_id]} runs"
    finished = {e.message_id for e in rows if e.finished and e.outcome == "ok"}
    assert {r.message_id for r in raws if not r.parked} <= finished
    bad_time = _ids(raws, "header") | _ids(raws, "timestamp")
    assert {e.published_at for e in rows if e.message_id in bad_time} <= {0.0}

    parked = read_queue(broker.amqp_url, dlq)
    # Dramatiq retries by publishing the message again (its JSON re-encoded with the retry
    # count and traceback in its options, under Dramatiq's own AMQP properties): what it parks
    # after retries is that copy, found by the message_id inside it.
    republished = [r for r in must_park if impl.name == "dramatiq" and r.attempts]
    by_kind = Counter(p.headers.get(KIND_HEADER) for p in parked)
    expected: dict[str | None, int] = {r.kind: 1 for r in must_park if r not in republished}
    expected[None] = 1 + len(republished)
    assert by_kind == Counter(expected), by_kind
    for raw in must_park:
        if raw in republished:
            assert any(_dramatiq_id(p) == raw.message_id for p in parked), raw.kind
            continue
        copy = next(p for p in parked if p.headers.get(KIND_HEADER) == raw.kind)
        assert copy.body == raw.body, raw.kind
        assert {k: copy.headers.get(k) for k in raw.headers} == raw.headers, raw.kind
        assert copy.headers.get("x-first-death-reason") == "rejected", raw.kind
    assert _task_failed_copy(impl, parked, failing[0])

    assert worker.alive(), worker.output()
    output = worker.output()
    if " [x] Received " in output:  # the worker prints the bodies (pika, Dramatiq)
        assert "h\\xe9llo \\u2713" in output, "stdout was not ASCII-only: this proves nothing"
    assert sum(" [!] parked message " in line for line in output.splitlines()) >= len(must_park)
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=0, unacked=0)


def _ids(raws: list[Raw], prefix: str) -> set[str]:
    return {r.message_id for r in raws if r.kind.startswith(prefix)}


def _dramatiq_id(copy: Parked) -> str | None:
    try:
        return str(json.loads(copy.body)["message_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _task_failed_copy(impl: Implementation, parked: list[Parked], message_id: str) -> bool:
    """Whether the message of the task that kept failing is among the parked, by its id."""
    for p in parked:
        if impl.name == "dramatiq":
            if _dramatiq_id(p) == message_id:
                return True
        elif p.message_id == message_id:
            return tasks.FAIL_MARKER.encode() in p.body
    return False


# -- crash loops: the delivery limit (quorum) and its negative control (classic) --------------


def _crash_loop(
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    queue_type: str,
    until: Callable[[str], bool],
    timeout: float,
) -> tuple[str, list[str], list[GroupProcess]]:
    """Publish a message that SIGKILLs its worker, then two good ones; keep one worker running
    (starting a new one whenever the last died) until ``until(crash_message_id)`` is true."""
    workers = [start_worker(impl, "w0", env=_env(queue_type))]
    crash = impl.publish_work([f"dies {tasks.CRASH_MARKER}"])[0]
    behind = impl.publish_work(["behind 1", "behind 2"])

    def done() -> bool:
        if not workers[-1].alive():
            workers.append(start_worker(impl, f"w{len(workers)}", env=_env(queue_type), wait=False))
        return until(crash)

    wait_until(done, timeout, interval=0.1, what="the crash loop to play out")
    return crash, behind, workers


@pytest.mark.timeout(180)
@pytest.mark.parametrize("queue_type", ["quorum"])
def test_delivery_limit_dead_letters_a_poison_message(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    typed: str,
) -> None:
    """Quorum queue, ``x-delivery-limit`` 2: a message that SIGKILLs its worker on every
    delivery is dead-lettered after 1 + 2 deliveries, body intact, and the messages behind it
    run once each."""
    dlq = impl.dead_letter_queue()

    def parked_and_flowing(crash: str) -> bool:
        stats = broker.management.queue(dlq)
        return (
            bool(stats and stats.ready == 1)
            and len({e.message_id for e in journal_rows(journal_path) if e.finished}) >= 2
        )

    crash, behind, _ = _crash_loop(
        impl, start_worker, journal_path, typed, parked_and_flowing, timeout=150
    )
    rows = wait_for_finished(journal_path, behind, timeout=60)
    runs = executions_per_message(rows)
    assert runs[crash] == DELIVERY_LIMIT + 1
    assert all(runs[i] == 1 for i in behind)
    [copy] = read_queue(broker.amqp_url, dlq)
    assert tasks.CRASH_MARKER.encode() in copy.body
    assert copy.headers.get("x-first-death-reason") == "delivery_limit"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("queue_type", ["classic"])
def test_classic_queue_redelivers_a_crashing_message_without_bound(
    broker: Node,
    impl: Implementation,
    start_worker: StartWorker,
    journal_path: str,
    typed: str,
) -> None:
    """Negative control of the delivery limit: on a classic queue (no delivery count, so no
    ``x-delivery-limit``) the same message is delivered again and again, past the quorum limit,
    and is never dead-lettered. Classic queues cannot bound a crash loop: use quorum queues
    (``MQLAB_QUEUE_TYPE=quorum``) where a poison message can kill its worker."""
    crash_runs = DELIVERY_LIMIT + 2  # one more delivery than the quorum queue allows

    def past_the_limit(crash: str) -> bool:
        return executions_per_message(journal_rows(journal_path))[crash] >= crash_runs

    _, _, workers = _crash_loop(
        impl, start_worker, journal_path, typed, past_the_limit, timeout=150
    )
    stats = broker.management.queue(impl.dead_letter_queue())
    assert stats is not None and stats.ready == 0
    for w in workers:
        w.kill()


def test_broker_status_counts_dead_letters(broker: Node, impl: Implementation) -> None:
    """``mqlab broker status`` shows each implementation's dead-letter queue with the number of
    messages parked in it ("-" before it exists: the negative control)."""
    from rich.console import Console

    from lab.commands.broker import dead_letter_table

    def row() -> list[str]:
        console = Console(record=True, width=200)
        console.print(dead_letter_table(broker.management))
        line = next(x for x in console.export_text().splitlines() if impl.dead_letter_queue() in x)
        return [cell.strip() for cell in line.split("\u2502") if cell.strip()]

    assert row() == [impl.name, impl.dead_letter_queue(), "-"]
    impl.publish_work(["x"])  # declares the work queue and its dead-letter queue
    raw = RAW_MESSAGES[impl.name](impl.task_queue())[0]
    publish_raw(broker.amqp_url, impl.dead_letter_queue(), [raw, raw])
    broker.management.wait_for_queue(impl.dead_letter_queue(), 30, ready=2)
    assert row() == [impl.name, impl.dead_letter_queue(), "2"]


@pytest.mark.timeout(90)
def test_a_work_queue_without_its_dead_letter_exchange_is_refused(
    broker: Node, impl: Implementation, tmp_path: object
) -> None:
    """A work queue declared before dead-lettering existed (durable, no x-arguments, as the seed
    tutorial declared it): the worker exits with one line naming 406 PRECONDITION_FAILED, the
    argument and the fix, and the message in that queue is still there. Arguments, not a policy:
    the dead-letter target is part of the queue's declaration in every implementation."""
    import pika

    from shared.impl import WorkerSpec

    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = connection.channel()
    channel.queue_declare(impl.task_queue(), durable=True)
    channel.basic_publish("", impl.task_queue(), b"accepted before the upgrade")
    connection.close()

    spec = WorkerSpec(name="old-queue", amqp_url=broker.amqp_url)
    with GroupProcess(impl.worker_command(spec), log_path=f"{tmp_path}/w.log") as worker:
        code = worker.wait(timeout=60)
        output = worker.output()
    assert code not in (None, 0), output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert "406" in errors[0] and "x-dead-letter-exchange" in errors[0], errors[0]
    assert "delete" in errors[0]
    broker.management.wait_for_queue(impl.task_queue(), 30, ready=1)
