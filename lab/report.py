"""Turns :class:`lab.runner.Results` into tables, a short reading, ``report.md`` and results.json.

Every figure shown is the median over the repeats of a run (with the min-max range when there
was more than one), computed here from the raw metrics in results.json; the end-to-end test
recomputes them from that file and from the journals to check this module.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.runner import BASELINE, Results, RunRecord
from lab.scenarios import ALL
from lab.stats import Summary, summarize

Format = Callable[[float], str]

PIKA_BAR = 0.8
"""The lab's own cost check: the pika worker (journal included) should consume at least this
fraction of the bare pika loop's rate at prefetch 1, or the lab's overhead distorts the
comparison."""


def _rate(v: float) -> str:
    return f"{v:,.0f}/s"


def _ms(v: float) -> str:
    return f"{v:.1f}"


def _s(v: float) -> str:
    return f"{v:.2f} s"


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def _count(v: float) -> str:
    return f"{v:.0f}"


def _mb(v: float) -> str:
    return f"{v:.1f} MB"


def _ratio(v: float) -> str:
    return f"{v:.2f}x"


@dataclass(frozen=True)
class Column:
    """One column of a scenario table: a metric key, its header and how to format it."""

    metric: str
    header: str
    fmt: Format
    scenario: str | None = None
    """Take the metric from this scenario instead of the table's own (footprint's RSS after)."""


def columns(scenario: str, config: dict[str, Any]) -> list[Column]:
    """The columns of ``scenario``'s table, given the run's settings."""
    if scenario == "throughput":
        cols = [Column("publish_per_s", "publish", _rate)]
        cols += [
            Column(f"consume_p{p}_per_s", f"consume, prefetch {p}", _rate)
            for p in config["throughput_prefetch"]
        ]
        return cols
    if scenario == "latency":
        return [
            Column(f"{kind}_p{p}_ms", f"{label} p{p} ms", _ms)
            for kind, label in (("start", "publish->start"), ("finish", "publish->finish"))
            for p in (50, 95, 99)
        ]
    if scenario == "fairness":
        return [
            Column("fast_share_p1_pct", "fast share, prefetch 1", _pct),
            Column("makespan_vs_ideal_p1", "makespan/ideal, prefetch 1", _ratio),
            Column("fast_share_unlimited_pct", "fast share, unlimited", _pct),
            Column("makespan_vs_ideal_unlimited", "makespan/ideal, unlimited", _ratio),
            Column("ideal_fast_share_pct", "ideal fast share", _pct),
        ]
    if scenario == "crash":
        return [
            Column("completed_pct", "completed", _pct),
            Column("lost", "lost", _count),
            Column("duplicate_executions", "duplicate executions", _count),
            Column("kills_mid_task", "kills mid-task", _count),
            Column("recover_mean_s", "recover mean", _s),
            Column("recover_max_s", "recover max", _s),
        ]
    if scenario == "restart":
        return [
            Column("survived_pct", "survived", _pct),
            Column("lost", "lost", _count),
            Column("duplicate_executions", "duplicate executions", _count),
            Column("workers_resumed", "workers resumed (of 2)", _count),
            Column("broker_down_to_ready_s", "broker down->ready", _s),
            Column("first_task_after_ready_max_s", "first task after broker ready", _s),
        ]
    if scenario == "footprint":
        last_p = config["throughput_prefetch"][-1]
        return [
            Column("startup_to_first_task_s", "start-up to first task", _s),
            Column("rss_idle_mb", "RSS idle", _mb),
            Column(f"rss_after_p{last_p}_mb", "RSS after throughput", _mb, "throughput"),
            Column("lines_of_code", "lines of code", _count),
        ]
    raise KeyError(scenario)


def runs_of(results: Results, scenario: str, impl: str) -> list[RunRecord]:
    """The runs of ``scenario`` for ``impl``, in repeat order."""
    return [r for r in results.runs if r.scenario == scenario and r.impl == impl]


def metric_summary(results: Results, scenario: str, impl: str, metric: str) -> Summary | None:
    """Median/min/max of ``metric`` over the successful runs that have it."""
    values = [
        v
        for r in runs_of(results, scenario, impl)
        if r.error is None and (v := r.metrics.get(metric)) is not None
    ]
    return summarize(values)


def baseline_ratio(results: Results, impl: str, metric: str) -> Summary | None:
    """``impl``'s throughput ``metric`` over the baseline's, per repeat, summarised.

    Each ratio pairs runs of the same repeat, so the implementation and the bare loop are
    compared in the same stretch of this run.
    """
    base = {r.repeat: r.metrics.get(metric) for r in runs_of(results, "throughput", BASELINE)}
    ratios = []
    for r in runs_of(results, "throughput", impl):
        b, v = base.get(r.repeat), r.metrics.get(metric)
        if r.error is None and b and v is not None:
            ratios.append(v / b)
    return summarize(ratios)


def cell(s: Summary | None, fmt: Format) -> str:
    """``median`` or ``median (min-max)``; ``-`` when there is no value.

    The range is shown only when the repeats differ as printed (a constant, such as the ideal
    fast share or 0 lost, is printed alone).
    """
    if s is None:
        return "-"
    low, high = fmt(s.low), fmt(s.high)
    if s.spread() and low != high:
        return f"{fmt(s.median)} ({low}-{high})"
    return fmt(s.median)


@dataclass
class Table:
    """A rendered table: a title, headers and rows of strings."""

    title: str
    description: str
    headers: list[str]
    rows: list[list[str]]


def run_status(runs: int, failed: int, skipped: int) -> str:
    """The ``runs`` column: ``ok``, ``skipped``, or how many of the runs failed / were skipped."""
    if runs and skipped == runs:
        return "skipped"
    parts = [f"{failed}/{runs} failed"] if failed else []
    parts += [f"{skipped}/{runs} skipped"] if skipped else []
    return ", ".join(parts) or "ok"


def impl_rows(results: Results, scenario: str) -> list[str]:
    """Row ids of ``scenario``'s table: the baseline first (throughput), then each impl."""
    return ([BASELINE] if scenario == "throughput" else []) + results.implementations


def tables(results: Results) -> list[Table]:
    """One table per scenario that ran."""
    out = []
    for scenario in results.scenarios:
        module = ALL[scenario]
        cols = columns(scenario, results.config)
        rows = []
        for impl in impl_rows(results, scenario):
            runs = runs_of(results, scenario, impl)
            failed = [r for r in runs if r.error is not None]
            skipped = [r for r in runs if r.skipped is not None]
            row = [impl]
            for c in cols:
                s = metric_summary(results, c.scenario or scenario, impl, c.metric)
                text = cell(s, c.fmt)
                if scenario == "throughput" and impl != BASELINE and s is not None:
                    text += f" ({cell(baseline_ratio(results, impl, c.metric), _ratio)} bare)"
                row.append(text)
            status = run_status(len(runs), len(failed), len(skipped))
            rows.append([*row, status])
        for name in results.missing:
            rows.append([name, *["-"] * len(cols), "missing"])
        headers = ["implementation", *[c.header for c in cols], "runs"]
        out.append(Table(module.TITLE, module.DESCRIPTION, headers, rows))
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
        for line in lines:
            text = f"{r.scenario} / {r.impl}: {line}"
            if text not in seen:
                seen.append(text)
    return seen


def _median(results: Results, scenario: str, impl: str, metric: str) -> float | None:
    s = metric_summary(results, scenario, impl, metric)
    return None if s is None else s.median


def reading(results: Results) -> list[str]:
    """A few sentences saying what the numbers say, generated from the medians."""
    out: list[str] = []
    impls = results.implementations
    if "throughput" in results.scenarios:
        for p in results.config["throughput_prefetch"]:
            metric = f"consume_p{p}_per_s"
            ranked = sorted(
                ((v, i) for i in impls if (v := _median(results, "throughput", i, metric))),
                reverse=True,
            )
            if ranked:
                listing = ", ".join(f"{i} {v:,.0f}/s" for v, i in ranked)
                out.append(f"Consume rate at prefetch {p}, fastest first: {listing}.")
        if "pika" in impls:
            ratio = baseline_ratio(results, "pika", "consume_p1_per_s")
            if ratio is not None:
                verdict = "meets" if ratio.median >= PIKA_BAR else "misses"
                out.append(
                    f"The lab's own cost check: the pika worker, journal included, should drain "
                    f"at least {PIKA_BAR:.0%} as fast as the bare pika loop at prefetch 1, so "
                    "that the lab's overhead does not distort the comparison; here it drains at "
                    f"{ratio.median:.0%}, so it {verdict} that bar"
                    + (
                        " (read small differences between implementations with care)."
                        if verdict == "misses"
                        else "."
                    )
                )
    if "latency" in results.scenarios:
        ranked_l = sorted(
            (v, i) for i in impls if (v := _median(results, "latency", i, "start_p50_ms"))
        )
        if ranked_l:
            listing = ", ".join(f"{i} {v:.1f} ms" for v, i in ranked_l)
            out.append(f"Median publish->start latency on an idle worker: {listing}.")
    if "fairness" in results.scenarios:
        parts = []
        for i in impls:
            a = _median(results, "fairness", i, "fast_share_p1_pct")
            b = _median(results, "fairness", i, "fast_share_unlimited_pct")
            if a is not None and b is not None:
                parts.append(f"{i} {a:.0f}% at prefetch 1 vs {b:.0f}% unlimited")
        if parts:
            ideal = _median(results, "fairness", impls[0], "ideal_fast_share_pct") or 80.0
            out.append(
                f"Fast worker's share (ideal {ideal:.0f}%): {'; '.join(parts)}. Prefetch 1 is "
                "what makes dispatch fair; unlimited prefetch splits the work round-robin."
            )
    if "crash" in results.scenarios:
        parts = []
        for i in impls:
            c = _median(results, "crash", i, "completed_pct")
            d = _median(results, "crash", i, "duplicate_executions")
            if c is not None and d is not None:
                parts.append(f"{i} {c:.1f}% completed with {d:.0f} duplicate execution(s)")
        if parts:
            out.append(
                f"Worker SIGKILLed mid-task: {'; '.join(parts)} (a duplicate is the message "
                "in hand at each kill, redelivered: at-least-once delivery)."
            )
    if "restart" in results.scenarios:
        parts = []
        for i in impls:
            sv = _median(results, "restart", i, "survived_pct")
            wr = _median(results, "restart", i, "workers_resumed")
            ft = _median(results, "restart", i, "first_task_after_ready_max_s")
            if sv is not None and wr is not None:
                parts.append(
                    f"{i} {sv:.1f}% survived, {wr:.0f}/2 workers resumed by themselves"
                    + (
                        f" (both within {ft:.2f} s of the broker being ready)"
                        if ft is not None and wr == 2
                        else ""
                    )
                )
        if parts:
            out.append(f"Node SIGKILLed and restarted: {'; '.join(parts)}.")
        skipped = [r.skipped for r in results.runs if r.scenario == "restart" and r.skipped]
        if skipped and not parts:
            out.append(f"Node restart not measured: {skipped[0]}.")
    if "footprint" in results.scenarios:
        parts = []
        for i in impls:
            st = _median(results, "footprint", i, "startup_to_first_task_s")
            rss = _median(results, "footprint", i, "rss_idle_mb")
            if st is not None and rss is not None:
                parts.append(f"{i} {st:.2f} s to the first task, {rss:.0f} MB idle")
        if parts:
            out.append(f"Footprint: {'; '.join(parts)}.")
    return out


def _md_table(t: Table) -> str:
    lines = [
        "| " + " | ".join(t.headers) + " |",
        "|" + "|".join("---" for _ in t.headers) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in t.rows]
    return "\n".join(lines)


def markdown(results: Results, charts: list[Path]) -> str:
    """The whole report.md text."""
    meta, cfg = results.meta, results.config
    when = dt.datetime.fromtimestamp(meta["started_at"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    libs = ", ".join(f"{k} {v}" for k, v in meta["libraries"].items())
    out = [
        f"# mqlab comparison, {when}",
        "",
        f"Implementations measured: {', '.join(results.implementations) or 'none'}."
        + (
            " Missing (not measured): "
            + "; ".join(f"{k} ({v})" for k, v in results.missing.items())
            + "."
            if results.missing
            else ""
        ),
        "",
        "## Machine and versions",
        "",
        f"- Machine: {meta['hostname']}, {meta['cpu_count']} CPU(s) ({meta['cpu_model']}), "
        f"{meta['memory_gb']} GB RAM, {meta['platform']}",
        f"- RabbitMQ {meta['broker']['rabbitmq']} on Erlang {meta['broker']['erlang']} "
        f"({meta['broker']['provider']} broker)",
        f"- Python {meta['python']}; {libs}",
        f"- Whole run: {meta['seconds']:.0f} s",
        "",
        "## Settings",
        "",
        f"- Repeats: {cfg['repeat']} (figures are medians; with more than one repeat the "
        "min-max range follows in brackets)" + ("; quick preset" if cfg["quick"] else ""),
        f"- Throughput: {cfg['throughput_n']:,} zero-work tasks per drain, prefetch "
        f"{', '.join(str(p) for p in cfg['throughput_prefetch'])}; 'x bare' is the ratio to "
        "the bare pika loop in the same repeat",
        f"- Latency: {cfg['latency_n']} tasks, one at a time",
        f"- Fairness: {cfg['fairness_tasks']} tasks of {cfg['fairness_dot_seconds'] * 1000:.0f}"
        f" ms, slow worker x{cfg['fairness_slowdown']:g}",
        f"- Crash: {cfg['crash_tasks']} tasks of {cfg['crash_dot_seconds'] * 1000:.0f} ms, "
        f"{cfg['crash_kills']} SIGKILLs of one of two workers",
        f"- Restart: {cfg['restart_messages']:,} confirmed tasks of "
        f"{cfg['restart_dot_seconds'] * 1000:.0f} ms, resume deadline "
        f"{cfg['resume_deadline']:.0f} s",
        "",
        "## What the numbers say",
        "",
        *[f"- {line}" for line in reading(results)],
        "",
    ]
    for t in tables(results):
        out += [f"## {t.title}", "", t.description, "", _md_table(t), ""]
    found = notes(results)
    if found:
        out += ["## Failures and remarks", "", *[f"- {n}" for n in found], ""]
    if charts:
        out += ["## Charts", ""]
        out += [f"![{c.stem}]({c.name})" for c in charts]
        out.append("")
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
    (out_dir / "results.json").write_text(json.dumps(results.as_dict(), indent=1) + "\n")
    path = out_dir / "report.md"
    path.write_text(markdown(results, charts))
    return path
