"""Latency: messages sent one at a time to an idle worker.

One worker (prefetch 1) waits on an empty queue; the lab publishes one zero-work task through
the implementation's producer, waits until the journal shows it finished, then sends the next.
publish->start is the journal's ``started_at`` minus the message's ``published_at`` (the precise
publish time the contract carries in a header, :mod:`shared.contract`); publish->finish uses
``finished_at``. Both clocks are this machine's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from lab.harness import Lab, Outcome, ScenarioFailed
from lab.stats import percentile
from shared.impl import Implementation
from shared.journal import Execution, Journal
from testbed.process import wait_until

NAME = "latency"
TITLE = "Latency"
DESCRIPTION = (
    "Zero-work tasks sent one at a time to an idle worker (prefetch 1): publish->start and "
    "publish->finish latency in ms."
)
PERCENTILES = (50, 95, 99)


def _finished_more_than(j: Journal, count: int) -> Callable[[], bool]:
    return lambda: j.finished_count() > count


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Send ``lab.config.latency_n`` tasks one by one and read their latencies from the journal."""
    n = lab.config.latency_n
    journal = lab.journal(f"latency-{impl.name}")
    ids: list[str] = []
    with lab.workers_scope(), contextlib.closing(Journal(journal)) as j:
        worker = lab.start_worker(impl, "idle", journal, prefetch=1)
        lab.wait_consuming(impl, [worker])
        for i in range(n):
            ids.extend(impl.publish_work(["task"], amqp_url=lab.amqp_url))
            try:
                wait_until(_finished_more_than(j, i), 30, interval=0.002, what="the task")
            except TimeoutError:
                raise ScenarioFailed(f"message {i + 1}/{n} not finished within 30 s") from None
        rows = [e for e in j.executions() if e.finished_at is not None]
    if {e.message_id for e in rows} != set(ids):
        raise ScenarioFailed("the journal's finished message_ids differ from those published")
    first: dict[str, Execution] = {}
    for e in rows:
        first.setdefault(e.message_id, e)
    start_ms = [(e.started_at - e.published_at) * 1000 for e in first.values()]
    finish_ms = [((e.finished_at or 0.0) - e.published_at) * 1000 for e in first.values()]
    out = Outcome(
        samples={
            "publish_to_start_ms": start_ms,
            "publish_to_finish_ms": finish_ms,
            "journal": journal,
        }
    )
    for p in PERCENTILES:
        out.metrics[f"start_p{p}_ms"] = percentile(start_ms, p)
        out.metrics[f"finish_p{p}_ms"] = percentile(finish_ms, p)
    return out
