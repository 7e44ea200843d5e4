"""Throughput: publish N zero-work tasks, then drain them with one worker process.

The implementation's own producer (:meth:`~shared.impl.Implementation.publish_work`, persistent
and confirmed) publishes N tasks into an empty queue; the publish rate is N over the wall time
of that call. Then one worker drains the full queue at prefetch 1 and again (after a fresh
publish) at prefetch 100; the consume rate is N over the time from the first execution's start
to the last one's finish, both read from the journal. The bare pika loop
(:mod:`lab.baseline`) is measured the same way, so each figure also reads as a ratio to it.
"""

from __future__ import annotations

import time

from lab import baseline
from lab.harness import Lab, Outcome, ScenarioFailed
from shared.impl import Implementation
from shared.journal import Execution

NAME = "throughput"
TITLE = "Throughput"
DESCRIPTION = (
    "N zero-work tasks published through the implementation's producer (persistent, "
    "confirmed), then drained by one worker at prefetch 1 and at prefetch 100."
)
BODY = "task"
"""A work body without dots: zero seconds of work (tutorial 2's convention)."""


def consume_window(rows: list[Execution]) -> tuple[float, float]:
    """(first start, last finish) over the finished executions in ``rows``, epoch seconds."""
    done = [e for e in rows if e.finished_at is not None]
    if not done:
        raise ScenarioFailed("no finished execution in the journal")
    return min(e.started_at for e in done), max(e.finished_at or 0.0 for e in done)


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Publish and drain ``lab.config.throughput_n`` tasks at each configured prefetch."""
    n = lab.config.throughput_n
    out = Outcome()
    publish_seconds: list[float] = []
    for prefetch in lab.config.throughput_prefetch:
        lab.reset([impl])
        journal = lab.journal(f"throughput-{impl.name}-p{prefetch}")
        started = time.perf_counter()
        ids = impl.publish_work([BODY] * n, amqp_url=lab.amqp_url)
        publish_seconds.append(time.perf_counter() - started)
        if len(ids) != n:
            raise ScenarioFailed(f"producer returned {len(ids)} message_ids for {n} bodies")
        with lab.workers_scope():
            worker = lab.start_worker(impl, f"drain-p{prefetch}", journal, prefetch=prefetch)
            rows = lab.wait_finished(
                journal, n, lab.config.drain_timeout, workers=[worker], interval=0.25
            )
            rss = worker.rss_mb()
        first, last = consume_window(rows)
        finished = {e.message_id for e in rows if e.finished}
        out.metrics[f"consume_p{prefetch}_per_s"] = n / (last - first)
        out.samples[f"p{prefetch}"] = {
            "published": n,
            "publish_seconds": publish_seconds[-1],
            "executions": len(rows),
            "finished_message_ids": len(finished),
            "unknown_message_ids": len(finished - set(ids)),
            "first_started_at": first,
            "last_finished_at": last,
            "rss_after_mb": rss,
            "journal": journal,
        }
        out.metrics[f"rss_after_p{prefetch}_mb"] = rss
    out.metrics["publish_per_s"] = n * len(publish_seconds) / sum(publish_seconds)
    return out


def run_baseline(lab: Lab) -> Outcome:
    """The same measurements for the bare pika loop of :mod:`lab.baseline`."""
    n = lab.config.throughput_n
    out = Outcome()
    publish_seconds: list[float] = []
    for prefetch in lab.config.throughput_prefetch:
        lab.reset([])
        publish_seconds.append(baseline.publish(lab.amqp_url, n))
        first, last = baseline.run_consumer(lab, n, prefetch, lab.config.drain_timeout)
        out.metrics[f"consume_p{prefetch}_per_s"] = n / (last - first)
        out.samples[f"p{prefetch}"] = {
            "published": n,
            "publish_seconds": publish_seconds[-1],
            "first_delivery_at": first,
            "last_ack_at": last,
        }
    out.metrics["publish_per_s"] = n * len(publish_seconds) / sum(publish_seconds)
    return out
