"""Drawing helpers the scenario modules share (matplotlib, Agg backend: no display needed).

matplotlib is imported on the first chart (:func:`pyplot`), not with this module: the ``mqlab``
commands import every scenario, and its import (about 1 s of CPU) would slow every command
that draws nothing (``mqlab --help``, ``mqlab broker up``).

One colour per implementation in every chart (:func:`colour`, set in :mod:`lab.run.targets`): a
variant of an implementation (``celery-defaults``, ``celery-threads``) keeps its colour with a
hatch or a dashed line, and a second setup (quorum, cluster) is drawn lighter. Bars are medians
over the repeats; with more than one repeat, error bars span min to max. Every value axis
names its unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lab.report.stats import Summary
from lab.report.view import BASELINE, Row, View
from lab.run import targets

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lab.run.runner import Results

BASELINE_COLOUR = "#7f7f7f"
HATCHES = {"defaults": "//", "threads": ".."}
"""Variant suffix -> bar hatch."""


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (imported on the first call)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(*args: Any, **kwargs: Any) -> Any:
    """``matplotlib.pyplot.subplots(*args, **kwargs)``: a new figure and its axes."""
    return pyplot().subplots(*args, **kwargs)


def colour(target: str) -> str:
    """The colour of ``target``'s implementation (:data:`lab.run.targets.IMPLEMENTATIONS`)."""
    return BASELINE_COLOUR if target == BASELINE else targets.colour(target)


def variant(target: str) -> str:
    """The variant suffix of ``target`` (``defaults``), or ``""``."""
    return target.split("-", 1)[1] if "-" in target else ""


def alpha(view: View, row: Row) -> float:
    """Full colour on the first setup, lighter on the others."""
    return 1.0 if view.setups.index(row.setup) == 0 else 0.5


Group = tuple[str, str, str]
"""One group of bars: (scenario, metric, x label)."""


def error(s: Summary) -> tuple[float, float]:
    """The error bar of a figure: its 95% interval below and above the median (0, 0 from one
    repeat: :mod:`lab.report.stats`)."""
    if s.ci is None:
        return 0.0, 0.0
    return max(0.0, s.median - s.ci[0]), max(0.0, s.ci[1] - s.median)


def repeats_note(view: View) -> str:
    """What a chart's error bars are, for its caption."""
    n = view.config["repeat"]
    if n == 1:
        return "one repeat: no error bars"
    return f"error bars: 95% interval of the median over {n} repeats"


def bars(ax: Axes, view: View, rows: Sequence[Row], groups: Sequence[Group]) -> None:
    """Grouped bars: one group per metric, one bar per row, 95% interval error bars
    (:func:`error`), with the repeats noted under the axis (:func:`repeats_note`)."""
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
            low, high = error(s)
            lows.append(low)
            highs.append(high)
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
    ax.set_xlabel(repeats_note(view), fontsize="small")


def legend_outside(ax: Axes) -> None:
    """A small legend to the right of ``ax``."""
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def save(out_dir: Path, name: str, top: float = 1.0) -> Path:
    """Save the current figure as ``out_dir/name`` and close it; return the path."""
    path = out_dir / name
    plt = pyplot()
    plt.tight_layout(rect=(0, 0, 1, top))
    plt.savefig(path, dpi=110)
    plt.close("all")
    return path


def has_data(view: View, scenario: str, metric: str) -> bool:
    """Whether any row of ``scenario`` has ``metric`` (no chart is drawn without data)."""
    return any(view.summary(scenario, row, metric) is not None for row in view.rows(scenario))


def cdf(ax: Axes, values: list[float], **style: Any) -> None:
    """A step CDF of ``values`` on ``ax``."""
    ordered = sorted(values)
    if ordered:
        ax.step(
            ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], where="post", **style
        )


def samples_ms(view: View, scenario: str, row: Row) -> list[float]:
    """publish->start samples (``samples["start_ms"]``) of every successful run of ``row``."""
    out: list[float] = []
    for r in view.runs(scenario, row):
        if r.error is None:
            out += list(r.samples.get("start_ms", []))
    return out


def outcome_chart(
    view: View,
    out_dir: Path,
    scenario: str,
    kept: tuple[str, str],
    counts: list[tuple[str, str]],
    title: str,
    of: str = "messages published",
) -> list[Path]:
    """Two panels: % of messages kept (``of`` what), and counts (lost, duplicates...)."""
    from matplotlib.ticker import MaxNLocator

    if not has_data(view, scenario, kept[0]):
        return []
    fig, (left, right) = subplots(1, 2, figsize=(12, 4.3), gridspec_kw={"width_ratios": [1, 2.2]})
    rows = view.rows(scenario)
    bars(left, view, rows, [(scenario, kept[0], kept[1])])
    left.set_ylim(0, 105)
    left.set_ylabel(f"% of {of}")
    bars(right, view, rows, [(scenario, m, label) for m, label in counts])
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("count")
    legend_outside(right)
    fig.suptitle(title)
    return [save(out_dir, f"{scenario}.png", top=0.93)]


def draw(results: Results, out_dir: Path) -> list[Path]:
    """Draw every chart the run has data for into ``out_dir``; return their paths (each
    scenario draws its own, :attr:`lab.scenario.Scenario.charts`)."""
    from lab.scenarios import find  # the scenarios import this module

    if not results.implementations:
        return []
    view = View(results)
    return [path for name in results.scenarios for path in find(name).charts(view, out_dir)]
