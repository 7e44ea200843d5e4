"""The lab's scenarios, one module each, in the order ``mqlab compare`` runs them.

Each module has ``NAME``, ``TITLE``, ``DESCRIPTION`` and ``run(lab, impl) -> Outcome``.
"""

from __future__ import annotations

from types import ModuleType

from lab.scenarios import crash, fairness, footprint, latency, restart, throughput

ALL: dict[str, ModuleType] = {
    m.NAME: m for m in (throughput, latency, fairness, crash, restart, footprint)
}
"""Scenario name -> module, in run order."""
