"""A message is data, not instructions: its own fields never steer a worker beyond running the
task it names.

Each implementation has one place that decides what of a message is honoured (an allow-list:
``celery_impl.admission``, ``dramatiq_impl.admission``; the pika worker reads only the body and
the contract header). Fed every field its framework reads in a hostile form
(:data:`tests.poison_messages.HOSTILE_MESSAGES`: wrong type, out of range, past and future times,
references to other queues or tasks), one worker runs each message once or parks it in the
dead-letter queue (after 0 attempts, or :data:`~shared.poison.MAX_ATTEMPTS` for a task that
keeps raising), never loops, never blocks the good messages behind it, and publishes nowhere
else: the broker's queues and their message counts are the same before and after, apart from
the work queue and its dead-letter queue. Negative control: the same comparison sees one
message published elsewhere.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import (
    StartWorker,
    executions_per_message,
    impl_params,
    journal_rows,
    wait_for_finished,
)
from tests.poison_messages import HOSTILE_MESSAGES, INJECTED_QUEUE, publish_raw

Counts = dict[str, int]


def queue_counts(broker: Node) -> Counts:
    """Every queue of the vhost and the messages in it (ready + unacked)."""
    return {q["name"]: int(q.get("messages", 0) or 0) for q in broker.management.queues()}


def changed_elsewhere(before: Counts, after: Counts, own: set[str]) -> dict[str, Any]:
    """Queues outside ``own`` that appeared or whose message count changed."""
    return {
        name: (before.get(name), count)
        for name, count in after.items()
        if name not in own and before.get(name) != count
    }


def own_queues(impl: Implementation) -> set[str]:
    """The work queue and where the implementation keeps its retries and dead letters."""
    work = impl.task_queue()
    return {work, impl.dead_letter_queue(), f"{work}.DQ", f"{work}.XQ"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("impl", impl_params("classic"), indirect=True)
def test_hostile_fields_run_once_or_park_and_steer_nothing(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    worker = start_worker(impl, "w1")
    hostile = HOSTILE_MESSAGES[impl.name](impl.task_queue())
    good = impl.publish_work(["before"])
    before = queue_counts(broker)
    for raw in hostile:
        publish_raw(broker.amqp_url, impl.task_queue(), [raw])
        good += impl.publish_work([f"after {raw.kind}"])

    rows = wait_for_finished(journal_path, good, timeout=180)
    must_park = [r for r in hostile if r.parked]
    try:
        broker.management.wait_for_queue(  # fresh counts: a reply published there shows
            impl.dead_letter_queue(), 90, ready=len(must_park), fresh_after=time.time()
        )
    except TimeoutError as e:
        runs = executions_per_message(journal_rows(journal_path))
        seen = {r.kind: runs[r.message_id] for r in hostile}
        pytest.fail(f"{e}\nruns per kind: {seen}\n{worker.output()}")
    broker.management.wait_for_queue(
        impl.task_queue(), 60, ready=0, unacked=0, fresh_after=time.time()
    )
    rows = journal_rows(journal_path)
    runs = executions_per_message(rows)
    wrong = {r.kind: runs[r.message_id] for r in hostile if runs[r.message_id] != r.attempts}
    assert not wrong, f"runs other than expected (kind: runs): {wrong}\n{worker.output()}"
    assert all(runs[i] == 1 for i in good), "a good message ran other than once"
    finished = {e.message_id for e in rows if e.finished and e.outcome == "ok"}
    assert {r.message_id for r in hostile if not r.parked} <= finished

    after = queue_counts(broker)
    assert INJECTED_QUEUE not in after
    assert changed_elsewhere(before, after, own_queues(impl)) == {}
    assert worker.alive(), worker.output()
    # Dramatiq's line for a middleware that raised (the message then acked, lost), Celery's
    # for an error that ends its consumer.
    for sign in ("Unexpected failure in", "Unrecoverable error"):
        assert sign not in worker.output(), worker.output()


@pytest.mark.timeout(60)
def test_control_the_comparison_sees_a_publish_elsewhere(broker: Node) -> None:
    """The negative control: a message published into another queue between the two listings
    is reported (so an empty report above means something)."""
    before = queue_counts(broker)
    elsewhere = f"{INJECTED_QUEUE}.control-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare(elsewhere)
        channel.basic_publish("", elsewhere, b"elsewhere")
        wait_until(
            lambda: (
                changed_elsewhere(before, queue_counts(broker), set()).get(elsewhere) == (None, 1)
            ),
            30,
            what="the listing to show the message published elsewhere",
        )
    finally:
        channel.queue_delete(elsewhere)
        connection.close()
