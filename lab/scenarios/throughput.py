"""Throughput: publish N zero-work tasks, then drain them with one worker that keeps no journal.

The target's own producer (persistent, confirmed unless it is a defaults row) publishes N tasks
into an empty queue; the publish rate is N over the producer's wall time. Then one worker with
no journal drains the full queue at prefetch 1 and again (after a fresh publish) at prefetch
100 (a defaults row drains once, at its framework's default prefetch). The consume rate is
timed from the queue itself (:mod:`lab.run.drain`) by the lab and, independently, by an observer
process started before the producer, which also times the queue filling up; the table prints
each figure's ratio to the observer's, publish and consume (the cross-check: it must stay
within 10%), and the broker's ack count for the queue must equal N. The bare pika loop
(:mod:`lab.run.bare_pika`) is measured the same way; "x bare" is each figure's ratio to it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.report import plot
from lab.report.checks import Checker, check_cost
from lab.report.decision import Need
from lab.report.view import BASELINE, Column, Row, View, cell, mb, rate, ratio, us
from lab.run import bare_pika, cost, targets
from lab.run.drain import Observer, drain, drain_rate, observed_publish_rate, publish_rate
from lab.run.harness import BASELINE_QUEUE, Lab, Outcome, ScenarioFailed, Target
from lab.scenario import Param, Scenario, params

NAME = "throughput"
BODY = "task"
"""A work body without dots: zero seconds of work (tutorial 2's convention)."""
TOLERANCE = 0.10
"""How far a figure may be from the independent observer's timing of the same drain."""
PIKA_BAR = 0.8
"""The pika worker should drain at least this fraction of the bare loop's rate."""
PIKA_CPU_BARS = {1: 1.5, 100: 1.1}
"""The pika worker's consumer CPU per task should be at most this multiple of the bare loop's,
per prefetch (issue 20; measured in docs/anomalies.md, "The pika worker's cost")."""
PRECISION = 0.10
"""How close to its median a CPU figure's 95% interval should stay (rows beyond: flagged)."""


def _labels(target: Target | None, config_prefetch: tuple[int, ...]) -> list[tuple[str, int]]:
    if target is not None and target.prefetch is not None:
        return [("default", target.prefetch)]
    return [(f"p{p}", p) for p in config_prefetch]


UNLIMITED = (
    "no consume figures at {label} prefetch (unlimited: no basic.qos): the broker pushes the "
    "whole queue at once, so the ready count (lab.run.drain) times the push, not the work; the "
    "drain still had to end with the broker counting every ack"
)


def _measure(
    out: Outcome, label: str, n: int, cpu_seconds: float, once: cost.Drain, prefetch: int
) -> None:
    """Drain ``n`` tasks (sized for ``cpu_seconds`` of consumer CPU, :func:`lab.run.cost.sized`)
    and record the rates and costs of the drain (at ``prefetch`` 0 only its publish and count:
    :data:`UNLIMITED`)."""
    if prefetch == 0:
        (result, took, producer), probe = once(n), {"unlimited": 1.0}
        out.notes.append(UNLIMITED.format(label=label))
    else:
        (result, took, producer), n, probe = cost.sized(n, cpu_seconds, once)
        ours, theirs = drain_rate(result["lab"]), drain_rate(result["observer"])
        out.metrics[f"consume_{label}_per_s"] = ours
        out.metrics[f"check_{label}"] = ours / theirs
        out.metrics[f"rss_after_{label}_mb"] = result["rss_after_mb"]
        cost.record(out, label, result, f"--set {NAME}.cpu_seconds=1")
    out.samples[label] = {**result, "published": n, "publish_seconds": took,
                          "producer_cpu_s": producer, **probe}  # fmt: skip


def run(lab: Lab, target: Target) -> Outcome:
    """Publish and drain ``n`` tasks at each prefetch of the target."""
    p = lab.config.of(NAME)
    out = Outcome()
    for label, prefetch in _labels(target, p["prefetch"]):

        def once(
            n: int, label: str = label, prefetch: int = prefetch
        ) -> tuple[dict[str, Any], float, float]:
            lab.reset([target.impl])
            observer = Observer(lab, target.queue(), n, f"{target.name}-{label}", p["poll"])
            with observer.killed_on_error():
                if target.producer_env:
                    published = lab.publisher(target, body=BODY, count=n).result()
                    ids, took = published["ids"], float(published["seconds"])
                    producer = float(published["cpu_seconds"])
                else:
                    started = time.perf_counter()
                    with cost.thread_cpu() as cpu:
                        ids = lab.publish(target, [BODY] * n)
                    took, producer = time.perf_counter() - started, cpu[0]
                if len(ids) != n:
                    raise ScenarioFailed(f"producer returned {len(ids)} message_ids for {n} bodies")
            spec = lab.worker_spec(target, f"drain-{label}", None, prefetch=prefetch)
            command = lab.worker_command(target, spec)
            result = drain(lab, target.queue(), n, command, f"{target.name}-{label}", observer)
            return result, took, producer

        _measure(out, label, p["n"], p["cpu_seconds"], once, prefetch)
    _publish(out)
    return out


def _drains(samples: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in samples.items() if isinstance(v, dict) and "lab" in v}


def _publish(out: Outcome) -> None:
    """The publish rate and the producer's CPU per task, and the rate's check against the
    observer's timing of the same fills."""
    drains = list(_drains(out.samples).values())
    counts = [d["published"] for d in drains]
    mine = publish_rate(counts, [d["publish_seconds"] for d in drains])
    out.metrics["publish_per_s"] = mine
    out.metrics["producer_cpu_us"] = sum(d["producer_cpu_s"] for d in drains) / sum(counts) * 1e6
    theirs = observed_publish_rate([d["observer"] for d in drains])
    if theirs is not None:
        out.metrics["check_publish"] = mine / theirs


def run_baseline(lab: Lab) -> Outcome:
    """The same measurements for the bare pika loop of :mod:`lab.run.bare_pika`."""
    p = lab.config.of(NAME)
    out = Outcome()
    for label, prefetch in _labels(None, p["prefetch"]):

        def once(
            n: int, label: str = label, prefetch: int = prefetch
        ) -> tuple[dict[str, Any], float, float]:
            lab.reset([])
            observer = Observer(lab, BASELINE_QUEUE, n, f"baseline-{label}", p["poll"])
            with observer.killed_on_error(), cost.thread_cpu() as cpu:
                took = bare_pika.publish(lab.node_url, n)
            timings = lab.workdir / "logs" / f"baseline-{label}-{time.time_ns()}.json"
            command = bare_pika.consumer_command(lab.node_url, n, prefetch, timings)
            result = drain(lab, BASELINE_QUEUE, n, command, f"baseline-{label}", observer)
            own = bare_pika.read_timings(timings)
            result.update(own_first_delivery_at=own[0], own_last_ack_at=own[1])
            return result, took, cpu[0]

        _measure(out, label, p["n"], p["cpu_seconds"], once, prefetch)
    _publish(out)
    return out


def columns(config: dict[str, Any]) -> list[Column]:
    """Publish rate, consume rates per prefetch, each one's cross-check ratio, and the
    worker's memory after the drain at the highest prefetch."""
    prefetches = params(config, NAME)["prefetch"]
    labels = [(f"p{p}", f"prefetch {p}") for p in prefetches]
    if "defaults" in config.get("variants", []):
        labels.append(("default", "default prefetch"))
    cols = [Column("publish_per_s", "publish", rate),
            Column("check_publish", "publish lab/observer", ratio),
            Column("producer_cpu_us", "producer CPU, us/task", us)]  # fmt: skip
    for key, head, kind in (("consume_{}_per_s", "consume, {}", rate),
                            ("check_{}", "lab/observer, {}", ratio),
                            ("cpu_{}_us", "consumer CPU, us/task, {}", us),
                            ("check_cpu_{}", "CPU lab/observer, {}", ratio),
                            ("broker_cpu_{}_us", "broker CPU, us/task, {}", us)):  # fmt: skip
        cols += [Column(key.format(k), head.format(h), kind) for k, h in labels]
    cols.append(Column(f"rss_after_p{prefetches[-1]}_mb", "worker RSS after the drain", mb))
    return cols


def cell_text(view: View, row: Row, metric: str) -> str | None:
    """A consume rate or consumer CPU cell with its ratio to the bare loop of the same repeat
    (``(0.85x bare)``)."""
    kind = us if metric.startswith("cpu_") else rate if metric.startswith("consume_") else None
    s = view.summary(NAME, row, metric)
    if row.target == BASELINE or "default" in metric or kind is None or s is None:
        return None
    bare = view.pair_ratio(NAME, row, Row(BASELINE, row.setup), metric)
    return cell(s, kind) + (f" ({cell(bare, ratio)} bare)" if bare else "")


def reading(view: View) -> list[str]:
    """Fastest first per prefetch; the cross-check; the pika worker against the bare loop."""
    out, prefetches = [], params(view.config, NAME)["prefetch"]
    for p in prefetches:
        metric = f"consume_p{p}_per_s"
        ranked = sorted(((v, r) for r in view.rows(NAME) if r.target != BASELINE
                         if (v := view.median(NAME, r, metric)) is not None),
                        key=lambda x: -x[0])  # fmt: skip
        if ranked:
            listing = ", ".join(f"{view.label(r)} {v:,.0f}/s" for v, r in ranked)
            out.append(f"Consume rate at prefetch {p} (no journal), fastest first: {listing}.")
    for kind, keys in (("consume", "check_p"), ("publish", "check_publish")):
        checks = [
            v for r in view.results.runs if r.scenario == NAME and r.error is None
            for k, v in r.metrics.items()
            if k.startswith(keys) or (kind == "consume" and k == "check_default")
            if v is not None
        ]  # fmt: skip
        if not checks:
            continue
        worst = max(checks, key=lambda v: abs(v - 1))
        verdict = "all within" if (ok := abs(worst - 1) <= TOLERANCE) else "NOT all within"
        why = (" A producer without publisher confirms returns before the broker holds its "
               "messages, so its own rate reads high." if kind == "publish" and not ok
               else "")  # fmt: skip
        out.append(
            f"Cross-check of every {kind} figure against an independent observer's timing of "
            f"the same {'drain' if kind == 'consume' else 'fill, from the queue'}: {verdict} "
            f"{TOLERANCE:.0%} (worst {worst:.2f}x over {len(checks)} figures).{why}"
        )
    cpu = [f"cpu_{k}_us" for k in ("default", *(f"p{p}" for p in prefetches))]
    loose = view.imprecise(NAME, cpu, PRECISION)
    if any(view.summary(NAME, r, m) for r in view.rows(NAME) for m in cpu):
        out.append(
            f"CPU per task: every row's median is within +-{PRECISION:.0%} at 95%." if not loose
            else f"CPU per task not within +-{PRECISION:.0%} at 95% (more repeats needed): "
            f"{', '.join(loose)}."
        )  # fmt: skip
    for row in (r for r in view.rows(NAME) if r.target.endswith("-defaults")):
        hard = Row(row.impl(), row.setup)
        d_pub, h_pub = (view.median(NAME, r, "publish_per_s") for r in (row, hard))
        d_con = view.median(NAME, row, "consume_default_per_s")
        h_con = view.median(NAME, hard, "consume_p1_per_s")
        how = "without" if targets.VARIANTS[row.target].get("producer_env") else "with default"
        con = "consume not timed at the default prefetch"
        if d_con is not None and h_con is not None:
            con = f"consume {d_con:,.0f}/s at the default prefetch vs {h_con:,.0f}/s at prefetch 1"
        if d_pub is not None and h_pub is not None:
            out.append(
                f"{view.label(row)} against {view.label(hard)}: publish {d_pub:,.0f}/s {how} "
                f"confirms vs {h_pub:,.0f}/s confirmed; {con} "
                "(what the guarantees cost; the crash and restart tables show what the "
                "defaults lose)."
            )
    for setup in view.setups:
        where = f" on {setup}" if len(view.setups) > 1 else ""
        pika, bare = Row("pika", setup), Row(BASELINE, setup)
        speed, cpu_cost, bars = [], [], []
        for p in params(view.config, NAME)["prefetch"]:
            if (s := view.pair_ratio(NAME, pika, bare, f"consume_p{p}_per_s")) is not None:
                verdict = "meets" if s.median >= PIKA_BAR else "misses"
                speed.append(f"{s.median:.0%} at prefetch {p} ({verdict})")
            c, bar = view.pair_ratio(NAME, pika, bare, f"cpu_p{p}_us"), PIKA_CPU_BARS.get(p)
            if c is not None and bar is not None:
                verdict = "meets" if c.median <= bar else "misses"
                cpu_cost.append(f"{c.median:.2f}x at prefetch {p} ({verdict})")
                bars.append(f"{bar:g}x at prefetch {p}")
        for what, bar_text, found in (
            ("own speed", f"at least {PIKA_BAR:.0%}", speed),
            ("CPU per task", f"at most {', '.join(bars)}", cpu_cost),
        ):
            if found:
                text = f"{bar_text}): {', '.join(found)}."
                out.append(
                    f"The pika worker's {what} against the bare pika loop{where} (target {text}"
                )
    return out


def charts(view: View, out_dir: Path) -> list[Path]:
    """Bars of the publish and consume rates per row."""
    if not plot.has_data(view, NAME, "publish_per_s"):
        return []
    fig, ax = plot.subplots(figsize=(9, 4.5))
    labels = [
        (f"consume_p{p}_per_s", f"consume,\nprefetch {p}")
        for p in params(view.config, NAME)["prefetch"]
    ]
    if "defaults" in view.config.get("variants", []):
        labels.append(("consume_default_per_s", "consume,\nframework default"))
    groups = [(NAME, "publish_per_s", "publish")] + [(NAME, m, h) for m, h in labels]
    plot.bars(ax, view, view.rows(NAME), groups)
    plot.legend_outside(ax)
    ax.set_ylabel("messages per second")
    ax.set_title(f"Throughput ({params(view.config, NAME)['n']:,} zero-work tasks, no journal)")
    paths = [plot.save(out_dir, "throughput.png")]
    cpu = [
        (NAME, f"cpu_p{p}_us", f"consumer,\nprefetch {p}")
        for p in params(view.config, NAME)["prefetch"]
    ] + [
        (NAME, f"broker_cpu_p{p}_us", f"broker,\nprefetch {p}")
        for p in params(view.config, NAME)["prefetch"]
    ]
    if plot.has_data(view, NAME, cpu[0][1]):
        fig, ax = plot.subplots(figsize=(9, 4.5))
        plot.bars(ax, view, view.rows(NAME), cpu)
        plot.legend_outside(ax)
        ax.set_ylabel("CPU microseconds per task (user + system)")
        ax.set_title("CPU cost per task (baseline: the bare pika loop, the floor)")
        paths.append(plot.save(out_dir, "throughput_cpu.png"))
    return paths


def settings(config: dict[str, Any]) -> str:
    """N, the prefetch counts and how often the queue is read."""
    p = params(config, NAME)
    sized = f"sized to hold {p['cpu_seconds']:g} s of consumer CPU" if p.get("cpu_seconds") else ""
    return (
        f"Throughput: {p['n']:,} zero-work tasks per drain, prefetch "
        f"{', '.join(str(x) for x in p['prefetch'])}, no journal; queue polled every "
        f"{p['poll'] * 1000:.0f} ms; drains {sized or 'not sized for the CPU window'}"
    )


def check(c: Checker, run: dict[str, Any]) -> None:
    """Each rate, CPU-per-task figure and cross-check ratio recomputed from the raw drain
    windows; each CPU figure against the observer's own reading of ``/proc``
    (:func:`lab.run.cost.agrees`: within 10% plus the clock's resolution)."""
    where = f"{NAME}/{run['impl']}"
    m, drains = run["metrics"], list(_drains(run["samples"]).values())
    counts = [d["published"] for d in drains]
    mine = publish_rate(counts, [d["publish_seconds"] for d in drains])
    c.close(m["publish_per_s"], mine, f"{where} publish rate")
    producer = sum(d["producer_cpu_s"] for d in drains) / sum(counts) * 1e6
    c.close(m["producer_cpu_us"], producer, f"{where} producer CPU")
    theirs = observed_publish_rate([d["observer"] for d in drains])
    if theirs is not None:
        c.close(m["check_publish"], mine / theirs, f"{where} publish cross-check")
    one = c.results["config"]["repeat"] == 1  # else the table shows medians, not each run
    for label, s in _drains(run["samples"]).items():
        if s["acks"] != s["published"]:
            c.problems.append(f"{where} {label}: {s['acks']} acks for {s['published']}")
        if s.get("unlimited") and f"consume_{label}_per_s" in m:
            c.problems.append(f"{where} {label}: a consume figure at unlimited prefetch")
    for key, value in m.items():
        label = key.removeprefix("consume_").removesuffix("_per_s")
        if not key.startswith("consume_") or (s := run["samples"][label]).get("unlimited"):
            continue
        ours, theirs = drain_rate(s["lab"]), drain_rate(s["observer"])
        c.close(value, ours, f"{where} {label} rate")
        c.close(m[f"check_{label}"], ours / theirs, f"{where} {label} cross-check")
        if one:
            c.shown(f"{value:,.0f}/s", where)
        check_cost(c, f"{where} {label}", s, m, label, TOLERANCE)


SCENARIO = Scenario(
    name=NAME,
    title="Throughput",
    description=(
        "N zero-work tasks published through the target's producer, then drained by one "
        "worker with no journal at prefetch 1 and 100 (defaults rows: once, at the framework's "
        "default prefetch). Consume rates are timed from the queue's ready count on the lab's "
        "own connection; *lab/observer* is each figure over an independent observer process's "
        "timing of the same drain; *x bare* is the ratio to the bare pika loop. CPU per task "
        "(user + system, microseconds) is the consumer's process tree, the broker's beam and "
        "the producer over the tasks of the drain window (lab.run.cost); *CPU lab/observer* "
        "is the lab's reading over the observer's own reading of /proc."
    ),
    run=run,
    columns=columns,
    params=(
        Param(
            "n",
            5000,
            2000,
            "zero-work tasks per drain (quick: a prefetch-100 drain must still span several "
            "readings under load, and the whole quick run its test's deadline)",
        ),
        Param("prefetch", (1, 100), (1, 100), "the prefetch counts the worker drains at"),
        Param("poll", 0.005, 0.005, "seconds between two readings of the queue in a drain"),
        Param(
            "cpu_seconds",
            1.0,
            0.0,
            "consumer CPU a drain should hold, seconds: a drain holding less is repeated with "
            "N sized from it, so a 10 ms clock tick stays under 1% (quick: 0, no sizing; "
            "coarse figures are flagged)",
        ),
    ),
    settings=settings,
    needs=(
        Need(
            "most throughput",
            "consume_p{top}_per_s",
            False,
            "{:,.0f} tasks/s at prefetch {top}",
            "prefetch {top} (fair dispatch given up)",
            words=lambda p: {"top": p["prefetch"][-1]},
            backing="cpu_p{top}_us",
            backing_unit="{:,.0f} us CPU/task",
        ),
        Need(
            "least CPU per task",
            "cpu_p{top}_us",
            True,
            "{:,.0f} us consumer CPU per task at prefetch {top}",
            "prefetch {top}, one worker",
            words=lambda p: {"top": p["prefetch"][-1]},
        ),
    ),
    cell=cell_text,
    reading=reading,
    charts=charts,
    check=check,
    baseline=run_baseline,
    variants=("defaults",),
    seconds=(5.0, 25.0),
)
