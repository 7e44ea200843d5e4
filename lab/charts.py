"""PNG charts of a comparison run (matplotlib, Agg backend: no display needed).

Bars are medians over the repeats; the error bars span min to max.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from lab.report import metric_summary  # noqa: E402
from lab.runner import BASELINE, Results  # noqa: E402


def _bars(
    ax: Axes,
    results: Results,
    scenario: str,
    impls: list[str],
    metrics: list[tuple[str, str]],
) -> None:
    """Grouped bars: one group per metric, one bar per implementation, min-max error bars."""
    width = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        xs, heights, lows, highs = [], [], [], []
        for m, (metric, _label) in enumerate(metrics):
            s = metric_summary(results, scenario, impl, metric)
            if s is None:
                continue
            xs.append(m + k * width)
            heights.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
        if xs:
            ax.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=impl)
    ax.set_xticks([m + width * (len(impls) - 1) / 2 for m in range(len(metrics))])
    ax.set_xticklabels([label for _metric, label in metrics])
    ax.legend()
    ax.grid(axis="y", alpha=0.3)


def draw(results: Results, out_dir: Path) -> list[Path]:
    """Draw every chart the run has data for into ``out_dir``; return their paths."""
    out: list[Path] = []
    impls = results.implementations
    if not impls:
        return out

    def save(name: str) -> None:
        path = out_dir / name
        plt.tight_layout()
        plt.savefig(path, dpi=110)
        plt.close("all")
        out.append(path)

    if "throughput" in results.scenarios:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        metrics = [("publish_per_s", "publish")] + [
            (f"consume_p{p}_per_s", f"consume, prefetch {p}")
            for p in results.config["throughput_prefetch"]
        ]
        _bars(ax, results, "throughput", [BASELINE, *impls], metrics)
        ax.set_ylabel("messages per second")
        ax.set_title(f"Throughput ({results.config['throughput_n']:,} zero-work tasks)")
        save("throughput.png")
    if "latency" in results.scenarios:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, kind, label in zip(
            axes, ("start", "finish"), ("publish -> start", "publish -> finish"), strict=True
        ):
            _bars(
                ax, results, "latency", impls, [(f"{kind}_p{p}_ms", f"p{p}") for p in (50, 95, 99)]
            )
            ax.set_ylabel("ms")
            ax.set_title(f"Latency {label}")
        save("latency.png")
    if "fairness" in results.scenarios:
        fig, ax = plt.subplots(figsize=(7, 4))
        _bars(
            ax,
            results,
            "fairness",
            impls,
            [("fast_share_p1_pct", "prefetch 1"), ("fast_share_unlimited_pct", "unlimited")],
        )
        ideal = metric_summary(results, "fairness", impls[0], "ideal_fast_share_pct")
        if ideal is not None:
            ax.axhline(ideal.median, color="black", linestyle="--", label="ideal")
        ax.axhline(50, color="grey", linestyle=":", label="round-robin")
        ax.legend()
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of tasks done by the fast worker")
        ax.set_title("Fair dispatch: fast worker's share (slow worker 4x slower)")
        save("fairness.png")
    if "crash" in results.scenarios or "restart" in results.scenarios:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        _bars(
            axes[0],
            results,
            "crash",
            impls,
            [("completed_pct", "% completed"), ("duplicate_executions", "duplicates")],
        )
        axes[0].set_title("Worker SIGKILLed mid-task")
        _bars(
            axes[1],
            results,
            "restart",
            impls,
            [("survived_pct", "% survived"), ("workers_resumed", "workers resumed (of 2)")],
        )
        axes[1].set_title("Broker SIGKILLed and restarted")
        save("outcomes.png")
    return out
