"""PNG charts of a comparison run (matplotlib, Agg backend: no display needed).

Bars are medians over the repeats; with more than one repeat, error bars span min to max.
Percentages and counts never share an axis, and every value axis names its unit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lab.report import metric_summary  # noqa: E402
from lab.runner import BASELINE, Results  # noqa: E402

Bar = tuple[str, str, str]
"""One group of bars: (scenario, metric, x label)."""


def _bars(
    ax: Axes, results: Results, impls: list[str], groups: list[Bar], *, legend: bool = True
) -> None:
    """Grouped bars: one group per metric, one bar per implementation.

    Min-max error bars are drawn only for an implementation with more than one repeat behind
    some bar (with one repeat there is no range to show).
    """
    width = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        xs, heights, lows, highs = [], [], [], []
        repeated = False
        for m, (scenario, metric, _label) in enumerate(groups):
            s = metric_summary(results, scenario, impl, metric)
            if s is None:
                continue
            xs.append(m + k * width)
            heights.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
            repeated = repeated or s.spread()
        if xs:
            yerr = [lows, highs] if repeated else None
            ax.bar(xs, heights, width, yerr=yerr, capsize=3, label=impl)
    ax.set_xticks([m + width * (len(impls) - 1) / 2 for m in range(len(groups))])
    ax.set_xticklabels([label for _scenario, _metric, label in groups])
    if legend:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)


def draw(results: Results, out_dir: Path) -> list[Path]:
    """Draw every chart the run has data for into ``out_dir``; return their paths."""
    out: list[Path] = []
    impls = results.implementations
    if not impls:
        return out

    def save(name: str, top: float = 1.0) -> None:
        path = out_dir / name
        plt.tight_layout(rect=(0, 0, 1, top))
        plt.savefig(path, dpi=110)
        plt.close("all")
        out.append(path)

    if "throughput" in results.scenarios:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        groups = [("throughput", "publish_per_s", "publish")] + [
            ("throughput", f"consume_p{p}_per_s", f"consume, prefetch {p}")
            for p in results.config["throughput_prefetch"]
        ]
        _bars(ax, results, [BASELINE, *impls], groups, legend=False)
        ax.legend(fontsize="small", loc="upper left")  # the publish bars are the short ones
        ax.set_ylabel("messages per second")
        ax.set_title(f"Throughput ({results.config['throughput_n']:,} zero-work tasks)")
        save("throughput.png")
    if "latency" in results.scenarios:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, kind, label in zip(
            axes, ("start", "finish"), ("publish -> start", "publish -> finish"), strict=True
        ):
            _bars(
                ax, results, impls, [("latency", f"{kind}_p{p}_ms", f"p{p}") for p in (50, 95, 99)]
            )
            ax.set_ylabel("latency, ms")
            ax.set_title(f"Latency {label}")
        save("latency.png")
    if "fairness" in results.scenarios:
        fig, ax = plt.subplots(figsize=(8.5, 4))
        _bars(
            ax,
            results,
            impls,
            [
                ("fairness", "fast_share_p1_pct", "prefetch 1"),
                ("fairness", "fast_share_unlimited_pct", "unlimited prefetch"),
            ],
        )
        ideal = metric_summary(results, "fairness", impls[0], "ideal_fast_share_pct")
        if ideal is not None:
            ax.axhline(ideal.median, color="black", linestyle="--", label="ideal")
        ax.axhline(50, color="grey", linestyle=":", label="round-robin")
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of tasks done by the fast worker")
        ax.set_title("Fair dispatch: fast worker's share (slow worker 4x slower)")
        save("fairness.png")
    outcome_data = any(
        metric_summary(results, scenario, impl, metric) is not None
        for impl in impls
        for scenario, metric in (("crash", "completed_pct"), ("restart", "survived_pct"))
    )
    if outcome_data:  # not drawn when every crash/restart run was skipped or failed
        fig, (pct, dup, resumed) = plt.subplots(
            1, 3, figsize=(13, 4.6), gridspec_kw={"width_ratios": [2, 3, 1.3]}
        )
        _bars(
            pct,
            results,
            impls,
            [
                ("crash", "completed_pct", "worker SIGKILLed:\ncompleted"),
                ("restart", "survived_pct", "broker SIGKILLed:\nsurvived"),
            ],
            legend=False,
        )
        pct.set_ylim(0, 100)
        pct.set_ylabel("% of messages published")
        pct.set_title("Messages not lost")
        _bars(
            dup,
            results,
            impls,
            [
                ("crash", "kills_mid_task", "worker SIGKILLed:\nkills mid-task"),
                ("crash", "duplicate_executions", "worker SIGKILLed:\nduplicates"),
                ("restart", "duplicate_executions", "broker SIGKILLed:\nduplicates"),
            ],
            legend=False,
        )
        dup.yaxis.set_major_locator(MaxNLocator(integer=True))
        dup.set_ylabel("count")
        dup.set_title("Duplicate executions (at-least-once)")
        _bars(
            resumed,
            results,
            impls,
            [("restart", "workers_resumed", "broker SIGKILLed")],
            legend=False,
        )
        resumed.set_ylim(0, 2)
        resumed.set_yticks([0, 1, 2])
        resumed.set_ylabel("workers (of 2)")
        resumed.set_title("Workers that resumed\nby themselves")
        handles, labels = pct.get_legend_handles_labels()
        if not handles:
            handles, labels = resumed.get_legend_handles_labels()
        if labels:
            fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        save("outcomes.png", top=0.92)
    return out
