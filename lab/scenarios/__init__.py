"""The lab's scenarios, one module each, in the order ``mqlab compare`` runs them.

Each module declares one :class:`lab.scenarios.base.Scenario` (``SCENARIO``): how it runs, its
report columns, its reading, its charts and its consistency checks. Adding a scenario is one
new module plus one line in the tuple below.
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
