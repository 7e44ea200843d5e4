"""What a scenario run returns or raises (plain data, no machinery)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ScenarioFailed(Exception):
    """A scenario could not produce its figures for one implementation; ``str()`` says why.

    The runner records it as that run's result and goes on with the next run.
    """


class ScenarioSkipped(Exception):
    """A scenario cannot run on this lab at all (say, it must kill a broker the lab does not
    own); ``str()`` says why. The runner records the run as skipped, not failed."""


@dataclass
class Outcome:
    """What one scenario run for one implementation measured.

    Attributes:
        metrics: named figures (units in the name: ``_per_s``, ``_ms``, ``_s``, ``_mb``,
            ``_pct``); ``None`` where the figure does not exist (a worker that never resumed).
        samples: the raw samples the metrics were computed from (written to results.json).
        notes: short remarks for the report (a worker that did not resume, and why).
    """

    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
