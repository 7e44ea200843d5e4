"""Small statistics helpers: percentiles and the median/min-max summary of repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of ``values`` (linear interpolation, like numpy's default).

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Summary:
    """Median and range of one metric over the repeats of a run.

    Attributes:
        median: the median of the samples.
        low: the smallest sample.
        high: the largest sample.
        n: how many samples.
    """

    median: float
    low: float
    high: float
    n: int

    def spread(self) -> bool:
        """Whether there is more than one sample (so a min-max range is worth showing)."""
        return self.n > 1


def summarize(values: Sequence[float]) -> Summary | None:
    """:class:`Summary` of ``values``, or ``None`` when there are none."""
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values))
