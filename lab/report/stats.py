"""Small statistics helpers: percentiles, and the median with its 95% interval over repeats.

The interval is a bootstrap confidence interval of the median (``scipy.stats.bootstrap``,
percentile method, :data:`RESAMPLES` resamples, seeded with :data:`SEED` so that the same
samples always give the same interval and a check can recompute it from results.json). The
percentile method is used because it stays defined for the few, often tied, values of a lab's
repeats, where BCa is not. With one value there is no interval: a figure from one repeat says
so (:func:`lab.report.view.cell`).

numpy and scipy are imported by the two functions that bootstrap, not with this module: the
``mqlab`` commands import it through every scenario, and scipy's import (about 2 s of CPU)
would slow every command that computes no interval.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95
"""The confidence level of every interval in the report."""
RESAMPLES = 2000
"""Bootstrap resamples per interval."""
SEED = 20
"""The bootstrap generator's seed (fixed: an interval is a function of its samples)."""


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


def interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The :data:`LEVEL` bootstrap interval of the median of ``values`` (module docstring);
    ``None`` for fewer than two values; ``(v, v)`` when they are all ``v``."""
    if len(values) < 2:
        return None
    if min(values) == max(values):
        return (values[0], values[0])
    import numpy as np
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that a tiny sample gives a rough interval
        found = stats.bootstrap(
            (np.asarray(values, dtype=float),),
            np.median,
            confidence_level=LEVEL,
            n_resamples=RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(SEED),
        ).confidence_interval
    return (float(found.low), float(found.high))


def percentile_interval(values: Sequence[float], pct: float) -> tuple[float, float] | None:
    """The :data:`LEVEL` bootstrap interval of the ``pct``-th percentile of ``values`` (the
    samples of one run, say its latencies); ``None`` for fewer than 20 values."""
    if len(values) < 20:
        return None
    import numpy as np
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = stats.bootstrap(
            (np.asarray(values, dtype=float),),
            lambda x, axis: np.percentile(x, pct, axis=axis),
            confidence_level=LEVEL,
            n_resamples=RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(SEED),
        ).confidence_interval
    return (float(found.low), float(found.high))


@dataclass(frozen=True)
class Summary:
    """Median, range and 95% interval of one metric over the repeats of a run.

    Attributes:
        median: the median of the samples.
        low: the smallest sample.
        high: the largest sample.
        n: how many samples.
        ci: the bootstrap interval of the median (:func:`interval`); ``None`` for one sample.
    """

    median: float
    low: float
    high: float
    n: int
    ci: tuple[float, float] | None = None

    def spread(self) -> bool:
        """Whether there is more than one sample (so an interval exists)."""
        return self.n > 1

    def clears(self, other: Summary, lowest: bool) -> bool:
        """Whether this figure is better than ``other`` beyond noise: both have intervals and
        they do not overlap, this one on the better side (below it if ``lowest``)."""
        if self.ci is None or other.ci is None:
            return False
        return self.ci[1] < other.ci[0] if lowest else self.ci[0] > other.ci[1]

    def overlaps(self, other: Summary) -> bool:
        """Whether the two intervals overlap (or either is missing: no evidence of a change)."""
        if self.ci is None or other.ci is None:
            return True
        return not (self.ci[1] < other.ci[0] or other.ci[1] < self.ci[0])


def summarize(values: Sequence[float]) -> Summary | None:
    """:class:`Summary` of ``values``, or ``None`` when there are none."""
    if not values:
        return None
    values = list(values)
    return Summary(
        statistics.median(values), min(values), max(values), len(values), interval(values)
    )
