"""Turns :class:`lab.run.runner.Results` into tables, a reading, ``report.md`` and results.json.

Nothing here knows a scenario by name: each scenario module declares its columns, its reading
and its charts (:class:`lab.scenario.Scenario`); the decision table comes from
:mod:`lab.report.decision`. Every figure shown is the median over the repeats of a run (with
the 95% interval of the median when there was more than one), computed by
:mod:`lab.report.view` from the raw metrics in results.json; the end-to-end test recomputes
them from that file and the journals.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from lab.report import decision
from lab.report.view import View, cell, provider, run_status
from lab.run.provenance import BUSY_OTHER, BUSY_STEAL
from lab.run.runner import Results
from lab.scenarios import find

__all__ = ["Table", "cell", "markdown", "notes", "reading", "run_status", "tables", "write"]


@dataclass
class Table:
    """A rendered table: a title, headers and rows of strings."""

    title: str
    description: str
    headers: list[str]
    rows: list[list[str]]


def tables(results: Results) -> list[Table]:
    """One table per scenario that ran."""
    view = View(results)
    out = []
    for name in results.scenarios:
        scenario = find(name)
        cols = scenario.columns(results.config)
        rows = []
        for row in view.rows(name):
            cells = [view.label(row)]
            for c in cols:
                text = scenario.cell(view, row, c.metric)
                if text is None:
                    source = provider(c.kind) if c.kind else name
                    text = cell(view.summary(source, row, c.metric), c.fmt)
                cells.append(text)
            rows.append([*cells, view.status(name, row)])
        if not rows:
            continue
        rows += [[n, *["-"] * len(cols), "missing"] for n in results.missing]
        headers = ["row", *[c.header for c in cols], "runs"]
        out.append(Table(scenario.title, scenario.description, headers, rows))
    return out


def notes(results: Results) -> list[str]:
    """Failures and remarks of every run, one line each (deduplicated)."""
    seen: list[str] = []
    for r in results.runs:
        lines = (
            ([f"failed: {r.error}"] if r.error else [])
            + ([f"skipped: {r.skipped}"] if r.skipped else [])
            + r.notes
        )
        where = f" ({r.setup})" if len(results.setups) > 1 else ""
        for line in lines:
            text = f"{r.scenario} / {r.impl}{where}: {line}"
            if text not in seen:
                seen.append(text)
    return seen


def reading(results: Results) -> list[str]:
    """A few sentences saying what the numbers say, one or more per scenario."""
    view = View(results)
    return [line for name in results.scenarios for line in find(name).reading(view)]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def settings_lines(results: Results) -> list[str]:
    """The run's settings, one bullet each."""
    cfg = results.config
    return [
        f"- Repeats: {cfg['repeat']}, interleaved (each repeat runs every row once, in a "
        "shuffled order, before the next; seed " + str(cfg.get("seed", "?")) + "). Figures are "
        "medians over the repeats; with more than one, [a-b] is the median's 95% bootstrap "
        "interval (percentile method) and the *runs* column gives n"
        + (
            ". **One repeat: no intervals, and every winner below is provisional**"
            if cfg["repeat"] == 1
            else ""
        )
        + ("; quick preset" if cfg["quick"] else ""),
        f"- Setups (queue type/topology): {', '.join(results.setups)}",
        f"- Lab deadline: {cfg['drain_timeout']:.0f} s to drain a queue",
        *[f"- {line}" for name in results.scenarios if (line := find(name).settings(cfg))],
    ]


def provenance_lines(results: Results) -> list[str]:
    """The code's commit, the command line and the machine's load during the runs
    (:mod:`lab.run.provenance`), one bullet each."""
    meta = results.meta
    git = meta.get("git") or {"commit": "unknown", "dirty": None}
    dirty = {True: " (work tree had uncommitted changes)", False: " (clean work tree)"}
    loads = [r.load for r in results.runs if r.load]
    out = [
        f"- Code: git commit {git['commit']}{dirty.get(git['dirty'], '')}",
        f"- Command: `{meta.get('command', 'unknown')}`",
    ]
    if loads:
        busy = [r for r in results.runs if r.load.get("busy")]
        others = sorted(x["other_cpu_share"] for x in loads)
        out.append(
            f"- Load (other processes' CPU, share of all cores, from /proc/stat): median "
            f"{others[len(others) // 2]:.0%}, highest {others[-1]:.0%}; steal highest "
            f"{max(x['steal_share'] for x in loads):.0%}; "
            + (
                f"**{len(busy)}/{len(loads)} runs on a busy machine** (other processes above "
                f"{BUSY_OTHER:.0%} or steal above {BUSY_STEAL:.0%}): "
                + ", ".join(f"{r.scenario}/{r.impl} #{r.repeat}" for r in busy[:12])
                + (" ..." if len(busy) > 12 else "")
                if busy
                else "no run on a busy machine"
            )
        )
    return out


def markdown(results: Results, charts: list[Path]) -> str:
    """The whole report.md text: decision table first, then machine, settings and tables."""
    meta = results.meta
    when = dt.datetime.fromtimestamp(meta["started_at"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    libs = ", ".join(f"{k} {v}" for k, v in meta["libraries"].items())
    missing = "; ".join(f"{k} ({v})" for k, v in results.missing.items())
    out = [
        f"# mqlab comparison, {when}",
        "",
        f"Implementations measured: {', '.join(results.implementations) or 'none'}."
        + (f" Missing (not measured): {missing}." if missing else ""),
        "",
        "## Which approach for which need",
        "",
        _md_table(decision.HEADERS, decision.rows(View(results))),
        "",
        "## Machine and versions",
        "",
        f"- Machine: {meta['hostname']}, {meta['cpu_count']} CPU(s) ({meta['cpu_model']}), "
        f"{meta['memory_gb']} GB RAM, {meta['platform']}",
        f"- RabbitMQ {meta['broker']['rabbitmq']} on Erlang {meta['broker']['erlang']} "
        f"({meta['broker']['provider']} broker)",
        f"- Python {meta['python']}; {libs}",
        *provenance_lines(results),
        f"- Whole run: {meta['seconds']:.0f} s",
        "",
        "## Settings",
        "",
        *settings_lines(results),
        "",
        "## What the numbers say",
        "",
        *[f"- {line}" for line in reading(results)],
        "",
    ]
    for t in tables(results):
        out += [f"## {t.title}", "", t.description, "", _md_table(t.headers, t.rows), ""]
    found = notes(results)
    if found:
        out += ["## Failures and remarks", "", *[f"- {n}" for n in found], ""]
    if charts:
        out += ["## Charts", "", *[f"![{c.stem}]({c.name})" for c in charts], ""]
    if meta.get("journals_kept"):
        where = (
            "the journals and worker logs are kept next to this report, in `journals/` and "
            "`logs/`; results.json names each journal relative to this directory"
        )
    else:
        where = (
            "results.json names each run's journal by file name only: the journals were in the "
            "lab's scratch directory, removed after the run (`--keep-journals` keeps them in "
            "`journals/` next to the report)"
        )
    out += [f"Raw samples: `results.json` (every run's metrics and samples); {where}.", ""]
    return "\n".join(out)


def write(results: Results, out_dir: Path, charts: list[Path]) -> Path:
    """Write results.json and report.md into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**results.as_dict(), "figures": View(results).figures()}
    (out_dir / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    path = out_dir / "report.md"
    path.write_text(markdown(results, charts))
    return path
