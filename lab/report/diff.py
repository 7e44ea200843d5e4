"""Two runs side by side (``mqlab diff OLD NEW``): what a settings change or a new version did.

Each figure of one run (:meth:`lab.report.view.View.figures`: a scenario, row, setup and metric,
its median and 95% interval) is paired with the same figure of the other. A difference is
*beyond noise* when the two intervals do not overlap (:meth:`lab.report.stats.Summary.overlaps`);
a figure from one repeat has no interval, so its difference is never called beyond noise.
Figures only one run has are listed apart, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.report.stats import Summary
from lab.report.view import View
from lab.run.runner import Results

Key = tuple[str, str, str, str]
"""(scenario, row, setup, metric)."""


@dataclass(frozen=True)
class Change:
    """One figure in both runs.

    Attributes:
        key: (scenario, row, setup, metric).
        old: its summary in the old run.
        new: its summary in the new run.
    """

    key: Key
    old: Summary
    new: Summary

    def beyond_noise(self) -> bool:
        """Whether the two 95% intervals do not overlap."""
        return not self.old.overlaps(self.new)

    def relative(self) -> float | None:
        """``new / old - 1``, or ``None`` when the old median is 0."""
        return self.new.median / self.old.median - 1 if self.old.median else None


def summaries(results: Results) -> dict[Key, Summary]:
    """Every figure of ``results`` by its key."""
    out = {}
    for f in View(results).figures():
        ci = (f["ci"][0], f["ci"][1]) if f["ci"] else None
        key = (f["scenario"], f["row"], f["setup"], f["metric"])
        out[key] = Summary(f["median"], f["median"], f["median"], f["n"], ci)
    return out


def compare(old: Results, new: Results) -> tuple[list[Change], list[Key], list[Key]]:
    """The figures both runs have (in the new run's order), then those only the old one has
    and those only the new one has."""
    a, b = summaries(old), summaries(new)
    both = [Change(k, a[k], s) for k, s in b.items() if k in a]
    return both, [k for k in a if k not in b], [k for k in b if k not in a]


def _fig(s: Summary) -> str:
    ci = f" [{s.ci[0]:,.4g}-{s.ci[1]:,.4g}]" if s.ci else ""
    return f"{s.median:,.4g}{ci} n={s.n}"


def markdown(old: Results, new: Results, names: tuple[str, str], only: bool = False) -> str:
    """The diff as markdown: a table of every shared figure (``only``: those beyond noise),
    marked **beyond noise** where the intervals do not overlap, then the unpaired figures."""
    both, gone, added = compare(old, new)
    shown = [c for c in both if c.beyond_noise()] if only else both
    beyond = sum(c.beyond_noise() for c in both)
    out: list[str] = [
        f"# mqlab diff: {names[0]} -> {names[1]}",
        "",
        *[
            f"- {label}: git {r.meta.get('git', {}).get('commit', 'unknown')}, "
            f"{r.config['repeat']} repeat(s), command `{r.meta.get('command', 'unknown')}`"
            for label, r in zip(("old", "new"), (old, new), strict=True)
        ],  # fmt: skip
        f"- {len(both)} figures in both runs, {beyond} differ beyond noise (95% intervals do "
        "not overlap); a figure from one repeat has no interval and is never called a change",
        "",
        "| scenario | row | setup | figure | old | new | change | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in shown:
        rel = c.relative()
        mark = "**beyond noise**" if c.beyond_noise() else "within noise"
        change = f"{rel:+.1%}" if rel is not None else "-"
        out.append(f"| {' | '.join(c.key)} | {_fig(c.old)} | {_fig(c.new)} | {change} | {mark} |")
    for title, keys in (("Only in the old run", gone), ("Only in the new run", added)):
        if keys:
            out += ["", f"{title}: " + ", ".join("/".join(k) for k in keys)]
    return "\n".join(out) + "\n"
