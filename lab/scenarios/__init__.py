"""The lab's scenarios, one module each, in the order ``mqlab compare`` runs them.

Each module declares one :class:`lab.scenarios.base.Scenario` (``SCENARIO``): how it runs, its
report columns, its reading, its charts and its consistency checks. Adding a scenario is one
new module plus one line in the tuple below. The smallest one, ``lab/scenarios/echo.py``::

    from lab.harness import Lab, Outcome, Target
    from lab.scenarios.base import Checker, Scenario
    from lab.view import Column, View, secs

    def run(lab: Lab, target: Target) -> Outcome:
        journal = lab.journal(f"echo-{target.name}")
        with lab.workers_scope():
            worker = lab.start_worker(target, "echo", journal)
            lab.publish(target, ["task"])
            rows = lab.wait_finished(journal, 1, 60, workers=[worker])
        return Outcome({"took_s": rows[0].finished_at - rows[0].published_at},
                       {"journal": journal})

    def check(c: Checker, run: dict) -> None:
        e = c.rows(run["samples"])[0]
        c.close(run["metrics"]["took_s"], e.finished_at - e.published_at, "echo")

    SCENARIO = Scenario(
        name="echo", title="Echo", description="One task, publish to finish.", run=run,
        columns=lambda config: [Column("took_s", "publish->finish", secs)],
        reading=lambda view: [], check=check,
    )

and ``echo.SCENARIO,`` in :data:`ALL`. The report, the charts (none here), ``--scenario echo``
and the end-to-end test's checks pick it up from there.
"""

from __future__ import annotations

from lab.scenarios import (
    crash,
    fairness,
    footprint,
    latency,
    loaded,
    nodeloss,
    restart,
    scaling,
    throughput,
)
from lab.scenarios.base import Scenario

ALL: dict[str, Scenario] = {
    s.name: s
    for s in (
        throughput.SCENARIO,
        latency.SCENARIO,
        loaded.SCENARIO,
        scaling.SCENARIO,
        fairness.SCENARIO,
        crash.SCENARIO,
        restart.SCENARIO,
        nodeloss.SCENARIO,
        footprint.SCENARIO,
    )
}
"""Scenario name -> scenario, in run order."""
