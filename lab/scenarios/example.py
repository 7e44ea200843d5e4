"""Example: the smallest scenario, the one ``docs/architecture.md`` walks through.

One worker, ``n`` zero-work tasks published at once; the figure is the median time from a
task's publish (the contract's ``published_at``) to its finish (the journal's ``finished_at``).
It runs only when asked (``mqlab compare --scenario example``) and is run end to end by
``tests/test_lab.py``, so the documented shape is code under test.
"""

from __future__ import annotations

import statistics
from typing import Any

from lab.report.checks import Checker
from lab.report.view import Column, View, secs
from lab.run.harness import Lab, Target
from lab.scenario import Outcome, Param, Scenario, params

NAME = "example"


def run(lab: Lab, target: Target) -> Outcome:
    """Publish ``n`` tasks to one worker; the median publish->finish, seconds."""
    n = lab.config.of(NAME)["n"]
    journal = lab.journal(f"{NAME}-{target.name}")
    with lab.workers_scope():
        worker = lab.start_worker(target, NAME, journal)
        lab.publish(target, ["task"] * n)
        rows = lab.wait_finished(journal, n, lab.config.drain_timeout, workers=[worker])
    took = statistics.median((e.finished_at or 0.0) - e.published_at for e in rows)
    return Outcome({"took_s": took}, {"journal": journal})


def columns(config: dict[str, Any]) -> list[Column]:
    """One column: the median publish->finish."""
    return [Column("took_s", f"publish->finish, median of {params(config, NAME)['n']}", secs)]


def reading(view: View) -> list[str]:
    """Nothing to say beyond the table."""
    return []


def check(c: Checker, run: dict[str, Any]) -> None:
    """The median recomputed from the journal."""
    rows = c.rows(run["samples"])
    took = statistics.median((e.finished_at or 0.0) - e.published_at for e in rows)
    c.close(run["metrics"]["took_s"], took, f"{NAME}/{run['impl']}")


SCENARIO = Scenario(
    name=NAME,
    title="Example",
    description="n tasks to one worker: the median time from publish to finish.",
    run=run,
    columns=columns,
    reading=reading,
    params=(Param("n", 5, 3, "tasks published at once"),),
    check=check,
    seconds=(2.0, 2.0),
)
