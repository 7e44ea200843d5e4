"""Fair dispatch: with prefetch 1 a slow worker holds one message at a time, so the fast
worker takes most of the work; with unlimited prefetch RabbitMQ deals evenly regardless.
"""

from __future__ import annotations

import pytest

from shared.impl import Implementation
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import StartWorker, finished_by_worker, journal_rows

TASKS = 20


@pytest.mark.timeout(120)
def test_fair_dispatch(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    start_worker(impl, "fast", prefetch=1)
    start_worker(impl, "slow", prefetch=1, slowdown=4.0)
    ids = impl.publish_work(["."] * TASKS)

    # Sample every consumer of the work queue while the workers are busy.
    samples: list[tuple[str, int, int]] = []

    def sample_until_done() -> bool:
        for c in broker.management.consumers(impl.task_queue()):
            samples.append((c.consumer_tag, c.prefetch_count, c.unacked))
        finished = {e.message_id for e in journal_rows(journal_path) if e.finished}
        return finished >= set(ids)

    wait_until(sample_until_done, 90, interval=0.1, what="every task to be executed")

    split = finished_by_worker(journal_rows(journal_path))
    assert sum(split.values()) == TASKS
    assert split["fast"] >= TASKS * 2 / 3, split
    assert samples, "no consumer was ever sampled"
    assert max(unacked for _, _, unacked in samples) <= 1, samples
    assert any(unacked == 1 for _, _, unacked in samples), "never saw a busy consumer"
    assert {prefetch for _, prefetch, _ in samples} == {1}


@pytest.mark.timeout(120)
def test_unlimited_prefetch_splits_evenly_regardless_of_speed(
    broker: Node, impl: Implementation, start_worker: StartWorker, journal_path: str
) -> None:
    start_worker(impl, "fast", prefetch=0)
    start_worker(impl, "slow", prefetch=0, slowdown=4.0)
    ids = impl.publish_work(["."] * TASKS)

    wait_until(
        lambda: {e.message_id for e in journal_rows(journal_path) if e.finished} >= set(ids),
        90,
        what="every task to be executed",
    )
    assert finished_by_worker(journal_rows(journal_path)) == {
        "fast": TASKS // 2,
        "slow": TASKS // 2,
    }
