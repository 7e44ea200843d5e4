"""The lab's scenarios, one module each, registered here by name in the order ``mqlab compare``
runs them.

Each module declares one :class:`lab.scenario.Scenario` (``SCENARIO``): how it runs, its
parameters with their full and ``--quick`` values, its baseline if it has one, its report
columns, reading, charts, decision-table needs and consistency checks. Adding a scenario is one
new module plus its name in :data:`RUN_ORDER` (or :data:`ON_DEMAND`, for a scenario that runs
only when ``--scenario`` names it). Scenarios never import each other; what several of them
need lives in :mod:`lab.run` and :mod:`lab.report`. ``docs/architecture.md`` walks through
the smallest one, registered in :data:`ON_DEMAND`.
"""

from __future__ import annotations

import importlib

from lab.scenario import Scenario

RUN_ORDER = ("throughput", "latency", "loaded", "scaling", "fairness", "crash", "restart", "nodeloss", "footprint")  # fmt: skip  # noqa: E501
"""The scenarios of a default ``mqlab compare`` run, in run order."""
ON_DEMAND = ("example", "partition")
"""Scenarios that run only when ``--scenario`` names them."""


def _load(name: str) -> Scenario:
    scenario: Scenario = importlib.import_module(f"lab.scenarios.{name}").SCENARIO
    return scenario


ALL: dict[str, Scenario] = {name: _load(name) for name in RUN_ORDER}
"""Scenario name -> scenario, in run order (the default run)."""
KNOWN: dict[str, Scenario] = {**ALL, **{name: _load(name) for name in ON_DEMAND}}
"""Every scenario ``--scenario`` accepts: :data:`ALL`, then :data:`ON_DEMAND`."""


def find(name: str) -> Scenario:
    """The scenario ``name`` (default or on demand).

    Raises:
        KeyError: no scenario has that name.
    """
    return KNOWN[name]
