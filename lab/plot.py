"""Drawing helpers the scenario modules share (matplotlib, Agg backend: no display needed).

One colour per implementation in every chart (:func:`colour`): a variant of an implementation
(``celery-defaults``, ``celery-threads``) keeps its colour with a hatch or a dashed line, and a
second setup (quorum, cluster) is drawn lighter. Bars are medians over the repeats; with more
than one repeat, error bars span min to max. Every value axis names its unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from lab.view import BASELINE, Row, View  # noqa: E402

COLOURS = {
    BASELINE: "#7f7f7f",
    "pika": "#1f77b4",
    "celery": "#2ca02c",
    "dramatiq": "#d62728",
    "faststream": "#9467bd",
}
"""Implementation id -> colour, the same in every chart."""
HATCHES = {"defaults": "//", "threads": ".."}
"""Variant suffix -> bar hatch."""


def colour(target: str) -> str:
    """The colour of ``target``'s implementation."""
    return COLOURS.get(target.split("-", 1)[0], "#9467bd")


def variant(target: str) -> str:
    """The variant suffix of ``target`` (``defaults``), or ``""``."""
    return target.split("-", 1)[1] if "-" in target else ""


def alpha(view: View, row: Row) -> float:
    """Full colour on the first setup, lighter on the others."""
    return 1.0 if view.setups.index(row.setup) == 0 else 0.5


Group = tuple[str, str, str]
"""One group of bars: (scenario, metric, x label)."""


def bars(ax: Axes, view: View, rows: Sequence[Row], groups: Sequence[Group]) -> None:
    """Grouped bars: one group per metric, one bar per row, min-max error bars with repeats."""
    width = 0.8 / max(len(rows), 1)
    for k, row in enumerate(rows):
        xs, heights, lows, highs = [], [], [], []
        repeated = False
        for m, (scenario, metric, _label) in enumerate(groups):
            s = view.summary(scenario, row, metric)
            if s is None:
                continue
            xs.append(m + k * width)
            heights.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
            repeated = repeated or s.spread()
        if xs:
            ax.bar(
                xs,
                heights,
                width,
                yerr=[lows, highs] if repeated else None,
                capsize=3,
                label=view.label(row),
                color=colour(row.target),
                alpha=alpha(view, row),
                hatch=HATCHES.get(variant(row.target)),
                edgecolor="white",
            )
    ax.set_xticks([m + width * (len(rows) - 1) / 2 for m in range(len(groups))])
    ax.set_xticklabels([label for _s, _m, label in groups])
    ax.grid(axis="y", alpha=0.3)


def legend_outside(ax: Axes) -> None:
    """A small legend to the right of ``ax``."""
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def save(out_dir: Path, name: str, top: float = 1.0) -> Path:
    """Save the current figure as ``out_dir/name`` and close it; return the path."""
    path = out_dir / name
    plt.tight_layout(rect=(0, 0, 1, top))
    plt.savefig(path, dpi=110)
    plt.close("all")
    return path


def has_data(view: View, scenario: str, metric: str) -> bool:
    """Whether any row of ``scenario`` has ``metric`` (no chart is drawn without data)."""
    return any(view.summary(scenario, row, metric) is not None for row in view.rows(scenario))
