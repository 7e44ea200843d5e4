"""Fairness: two workers, one four times slower, share a batch of tasks.

Both workers consume before the tasks are published. With prefetch 1 RabbitMQ gives a worker a
new message only when it has acknowledged the previous one, so the fast worker should take about
four fifths of the work (RabbitMQ tutorial 2, "Fair dispatch"); with unlimited prefetch
(:attr:`~shared.impl.Implementation.unlimited_prefetch`) deliveries go round-robin, half each,
and the slow worker decides the makespan. The ideal makespan is the best split of the tasks
between the two speeds; makespan is the first start to the last finish in the journal.
"""

from __future__ import annotations

from lab.harness import Lab, Outcome, ScenarioFailed
from shared.impl import Implementation
from shared.tasks import work_seconds

NAME = "fairness"
TITLE = "Fair dispatch"
DESCRIPTION = (
    "Two workers, one 4x slower, share 40 tasks: the fast worker's share and the makespan "
    "against the ideal, at prefetch 1 and at unlimited prefetch."
)
BODY = "task."
"""One unit of work (``lab.config.fairness_dot_seconds``) for the fast worker."""


def ideal_makespan(tasks: int, fast: float, slow: float) -> tuple[float, int]:
    """The shortest makespan for ``tasks`` tasks split between a fast and a slow worker.

    Parameters:
        tasks: number of tasks.
        fast: seconds per task on the fast worker.
        slow: seconds per task on the slow worker.

    Returns:
        (makespan in seconds, tasks the fast worker takes in that split).
    """
    return min((max(k * fast, (tasks - k) * slow), k) for k in range(tasks + 1))


def run(lab: Lab, impl: Implementation) -> Outcome:
    """Run the batch at prefetch 1 and at unlimited prefetch; shares come from the journal."""
    cfg = lab.config
    fast = work_seconds(BODY, cfg.fairness_dot_seconds)
    slow = fast * cfg.fairness_slowdown
    ideal, ideal_fast = ideal_makespan(cfg.fairness_tasks, fast, slow)
    out = Outcome()
    out.samples["ideal"] = {"makespan_s": ideal, "fast_tasks": ideal_fast}
    out.metrics["ideal_makespan_s"] = ideal
    out.metrics["ideal_fast_share_pct"] = 100 * ideal_fast / cfg.fairness_tasks
    for label, prefetch in (("p1", 1), ("unlimited", impl.unlimited_prefetch)):
        lab.reset([impl])
        journal = lab.journal(f"fairness-{impl.name}-{label}")
        with lab.workers_scope():
            workers = [
                lab.start_worker(impl, "fast", journal, prefetch=prefetch,
                                 dot_seconds=cfg.fairness_dot_seconds),
                lab.start_worker(impl, "slow", journal, prefetch=prefetch,
                                 slowdown=cfg.fairness_slowdown,
                                 dot_seconds=cfg.fairness_dot_seconds),
            ]  # fmt: skip
            lab.wait_consuming(impl, workers)
            ids = impl.publish_work([BODY] * cfg.fairness_tasks, amqp_url=lab.amqp_url)
            rows = lab.wait_finished(journal, len(ids), cfg.drain_timeout, workers=workers)
        done = [e for e in rows if e.finished_at is not None]
        per_worker = {w: sum(1 for e in done if e.worker == w) for w in ("fast", "slow")}
        if sum(per_worker.values()) < len(ids):
            raise ScenarioFailed(f"finished executions per worker {per_worker} < {len(ids)}")
        makespan = max(e.finished_at or 0.0 for e in done) - min(e.started_at for e in done)
        share = 100 * per_worker["fast"] / sum(per_worker.values())
        out.metrics[f"fast_share_{label}_pct"] = share
        out.metrics[f"makespan_{label}_s"] = makespan
        out.metrics[f"makespan_vs_ideal_{label}"] = makespan / ideal
        out.samples[label] = {
            "prefetch": prefetch,
            "tasks": len(ids),
            "finished_by_worker": per_worker,
            "executions": len(rows),
            "makespan_s": makespan,
            "journal": journal,
        }
    return out
