"""ETA messages never take the only slot of a prefetch-1 worker.

* Celery: the work task refuses ``eta``/``countdown`` at the producer, and a worker that gets an
  ETA message anyway (another producer) dead-letters it at once instead of holding it unacked
  until its time (:mod:`celery_impl.admission`).
* Dramatiq: a delayed message (``delay=``) waits in the ``.DQ`` delay queue, consumed apart from
  the work queue; the messages behind it run first, and it runs when due.
* pika: the hand-written worker has no ETA at all.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared import queues
from shared.errors import MqlabError
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import IMPLEMENTATIONS, StartWorker, journal_rows, wait_for_finished


@pytest.mark.timeout(30)
def test_celery_refuses_eta_and_countdown_at_the_producer() -> None:
    if "celery" not in IMPLEMENTATIONS:
        pytest.skip("celery_impl not importable")
    from celery_impl import tasks

    for option in ({"countdown": 60}, {"eta": time.time() + 60}):
        with pytest.raises(MqlabError, match="no eta/countdown"):
            tasks.work.apply_async(("later.",), **option)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("eta", [True, False], ids=["eta", "control-no-eta"])
def test_celery_eta_message_is_dead_lettered_and_the_rest_run(
    broker: Node, start_worker: StartWorker, journal_path: str, eta: bool
) -> None:
    if "celery" not in IMPLEMENTATIONS:
        pytest.skip("celery_impl not importable")
    from celery_impl.broker import app, work_queue

    impl = IMPLEMENTATIONS["celery"]
    queue = impl.task_queue()
    worker = start_worker(impl, "w1", prefetch=1)
    # Another producer's message, past WorkTask.apply_async: with an ETA a minute away, or
    # (the control) without, through the same path.
    with app.connection_for_write(broker.amqp_url) as conn:
        sent = app.send_task(
            "celery_impl.work",
            args=("sent by another producer.",),
            queue=work_queue(queue),
            connection=conn,
            countdown=60 if eta else None,
        )
    ids = impl.publish_work(["."] * 3)

    rows = wait_for_finished(journal_path, ids if eta else [*ids, sent.id], timeout=60)
    if eta:
        assert sent.id not in {r.message_id for r in rows}
        wait_until(
            lambda: (
                (q := broker.management.queue(queues.dead_letter_queue(queue))) is not None
                and q.ready == 1
            ),
            30,
            what="the ETA message in the dead-letter queue",
        )
        assert "refused a message with an ETA" in worker.output()
    assert worker.alive()


@pytest.mark.timeout(90)
def test_dramatiq_delayed_message_waits_in_dq_while_the_rest_run(
    broker: Node, start_worker: StartWorker, journal_path: str
) -> None:
    if "dramatiq" not in IMPLEMENTATIONS:
        pytest.skip("dramatiq_impl not importable")
    from dramatiq_impl import actors
    from dramatiq_impl.broker import make_broker

    impl = IMPLEMENTATIONS["dramatiq"]
    start_worker(impl, "w1", prefetch=1)
    delay_ms = 3000
    client = make_broker(broker.amqp_url)
    try:
        delayed = client.enqueue(
            actors.work.message_with_options(args=("delayed.",), delay=delay_ms).copy(
                queue_name=impl.task_queue()
            ),
            delay=delay_ms,
        )
    finally:
        client.close()
    sent_at = time.time()
    ids = impl.publish_work(["."] * 3)

    rows = wait_for_finished(journal_path, [*ids, delayed.message_id], timeout=60)
    by_id = {r.message_id: r for r in rows}
    delayed_row = by_id[delayed.message_id]
    assert all(by_id[i].started_at < delayed_row.started_at for i in ids)
    assert delayed_row.started_at >= sent_at + delay_ms / 1000 - 0.5
    assert len(journal_rows(journal_path)) == 4


@pytest.mark.timeout(60)
@pytest.mark.parametrize("eta", [True, False], ids=["eta", "control-past-eta"])
def test_dramatiq_eta_on_the_work_queue_is_dead_lettered_and_the_rest_run(
    broker: Node, start_worker: StartWorker, journal_path: str, eta: bool
) -> None:
    """Another producer puts a message with an ``eta`` an hour ahead straight onto the work
    queue (Dramatiq's own delayed messages go to ``.DQ``). Dramatiq would hold it unacked in
    memory until then, in the only prefetch slot: nothing behind it ran. It is parked in
    ``.XQ`` and the rest run. Control: an eta already past runs like any message."""
    if "dramatiq" not in IMPLEMENTATIONS:
        pytest.skip("dramatiq_impl not importable")
    from tests.poison_messages import _dramatiq, publish_raw

    impl = IMPLEMENTATIONS["dramatiq"]
    queue = impl.task_queue()
    worker = start_worker(impl, "w1", prefetch=1)
    when = time.time() + (3600 if eta else -60)
    held = _dramatiq(
        queue, "eta", options={"eta": int(when * 1000)}, parked=eta, attempts=0 if eta else 1
    )
    publish_raw(broker.amqp_url, queue, [held])
    ids = impl.publish_work(["."] * 3)

    expected = ids if eta else [*ids, held.message_id]
    rows = wait_for_finished(journal_path, expected, timeout=30)
    if eta:
        assert held.message_id not in {r.message_id for r in rows}
        broker.management.wait_for_queue(impl.dead_letter_queue(), 30, ready=1)  # parked
        assert "an eta" in worker.output()
    assert worker.alive()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("past", [True, False], ids=["expired", "control-future-expires"])
def test_celery_expired_message_is_dead_lettered_not_dropped(
    broker: Node, start_worker: StartWorker, journal_path: str, past: bool
) -> None:
    """Another producer's task whose ``expires`` has passed (``apply_async(expires=...)``, a
    queue backed up): Celery acked it away ("Discarding revoked task", INFO): neither run nor
    in the dead-letter queue. It is parked. Control: an ``expires`` still ahead runs."""
    if "celery" not in IMPLEMENTATIONS:
        pytest.skip("celery_impl not importable")
    from tests.poison_messages import _celery, publish_raw

    impl = IMPLEMENTATIONS["celery"]
    queue = impl.task_queue()
    worker = start_worker(impl, "w1", prefetch=1)
    when = datetime.now(UTC) + timedelta(hours=-1 if past else 1)

    def expires(headers: dict[str, object]) -> None:
        headers["expires"] = when.isoformat()

    message = _celery("expires", edit=expires, parked=past, attempts=0 if past else 1)
    publish_raw(broker.amqp_url, queue, [message])
    ids = impl.publish_work(["."] * 2)

    rows = wait_for_finished(journal_path, ids if past else [*ids, message.message_id], 30)
    if past:
        assert message.message_id not in {r.message_id for r in rows}
        broker.management.wait_for_queue(impl.dead_letter_queue(), 30, ready=1)  # parked
        assert "expired before it ran" in worker.output()
    assert worker.alive()
