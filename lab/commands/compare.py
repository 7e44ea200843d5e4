"""``mqlab compare``: run the scenarios, then write the report, results and charts."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from lab.commands.usage import UsageError, console, select_implementations, select_scenarios, split
from lab.report import markdown, plot
from lab.run.config import Config
from lab.run.harness import Lab
from lab.run.nodes import lab_node
from lab.run.runner import (
    Results,
    RunRecord,
    broker_facts,
    estimate,
    finish,
    new_results,
    plan,
    run_setup,
    skip_all,
)
from lab.scenario import ParamValue
from lab.scenarios import find
from shared.errors import MqlabError
from shared.queues import QUEUE_TYPES
from testbed.netns import why_unavailable
from testbed.node import Node
from testbed.provider import provision

TOPOLOGIES = ("single", "cluster")
BOOT_SECONDS = {"cluster": 60.0}
"""Rough seconds to boot and form a topology's nodes, for the estimate."""


def render(table: markdown.Table, width: int = 80) -> list[RichTable]:
    """A report table as rich tables for a terminal ``width`` columns wide (80 or more).

    Cells and headers wrap at spaces; each column is at least as wide as the longest word of
    its cells and of its header, so a number or a header word is never folded or cut, and has
    a fixed width (rich shrinks a column below its longest word in a tight table, and cuts
    it). No vertical rules (``box.SIMPLE_HEAD``). When the columns cannot all fit at those
    widths, the table is split into several, each repeating the first column (the
    implementation), titled ``(continued)``.
    """

    def longest(texts: list[str], split: bool) -> int:
        return max((len(w) for t in texts for w in (t.split() if split else [t])), default=1)

    columns = range(len(table.headers))
    cells = [[row[i] for row in table.rows if i < len(row)] for i in columns]
    # A column never narrower than its longest word (of a cell or of its header), never wider
    # than its longest cell or header; +3: the padding and the space between columns.
    least = [max(longest(cells[i], True), longest([table.headers[i]], True)) for i in columns]
    most = [max(longest(cells[i], False), longest([table.headers[i]], False)) for i in columns]
    parts: list[list[int]] = [[]]
    used = least[0] + 3 if least else 0
    for i in range(1, len(table.headers)):
        if parts[-1] and used + least[i] + 3 > width:
            parts.append([])
            used = least[0] + 3
        parts[-1].append(i)
        used += least[i] + 3
    out = []
    for n, part in enumerate(parts):
        shown = [0, *part]
        # Fixed widths (rich would otherwise shrink a column below its longest word when the
        # table is tight, and cut it): the room left shared in proportion to what each wants.
        room = max(0, width - sum(least[i] + 3 for i in shown))
        want = [most[i] - least[i] for i in shown]
        sizes = [
            least[i] + (min(w, room * w // sum(want)) if sum(want) > room else w)
            for i, w in zip(shown, want, strict=True)
        ]
        title = table.title if n == 0 else f"{table.title} (continued)"
        rich = RichTable(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, size in zip(shown, sizes, strict=True):
            rich.add_column(
                table.headers[i],
                justify="left" if i == 0 else "right",
                overflow="fold",
                width=size,
            )
        for row in table.rows:
            rich.add_row(*[row[i] if i < len(row) else "" for i in shown])
        out.append(rich)
    return out


def config_from(args: argparse.Namespace, scenarios: list[str]) -> Config:
    """The run's settings from the ``compare`` arguments, for ``scenarios``.

    Raises:
        UsageError: a bad count, queue type, topology or ``--set``.
    """
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    queue_types = tuple(split(args.queue_type)) or ("classic",)
    bad = [q for q in queue_types if q not in QUEUE_TYPES]
    if bad:
        raise UsageError(f"unknown queue type {', '.join(bad)}; known: {', '.join(QUEUE_TYPES)}")
    topologies = tuple(split(args.topology)) or ("single",)
    bad = [t for t in topologies if t not in TOPOLOGIES]
    if bad:
        raise UsageError(f"unknown topology {', '.join(bad)}; known: {', '.join(TOPOLOGIES)}")
    if "cluster" in topologies and args.amqp_url:
        raise UsageError("--topology cluster provisions its own nodes; drop --amqp-url")
    sets = parse_sets(args.set or [])
    idle = [n for n in sets if n not in scenarios]
    if idle:
        raise UsageError(f"--set {idle[0]}.*: scenario {idle[0]} is not in this run")
    return Config.preset(
        args.quick,
        [find(n) for n in scenarios],
        args.repeat,
        sets=sets,
        queue_types=queue_types,
        topologies=topologies,
    )


def parse_sets(items: list[str]) -> dict[str, dict[str, ParamValue]]:
    """``--set <scenario>.<param>=<value>`` items as scenario -> parameter -> value.

    Raises:
        UsageError: not of that form, an unknown scenario or parameter, or a bad value.
    """
    out: dict[str, dict[str, ParamValue]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        name, dot, param = key.strip().partition(".")
        if not (eq and dot and param):
            raise UsageError(f"--set {item}: expected <scenario>.<parameter>=<value>")
        try:
            declared = find(name).param(param)
        except KeyError:
            raise UsageError(f"--set {item}: no such parameter (see 'mqlab scenarios')") from None
        try:
            out.setdefault(name, {})[param] = declared.parse(text.strip())
        except ValueError as e:
            raise UsageError(f"--set {item}: {e}") from None
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    impls, missing = select_implementations(split(args.impl))
    scenarios = select_scenarios(split(args.scenario))
    if args.management_url and not args.amqp_url:
        raise UsageError("--management-url goes with --amqp-url (a private node has its own)")
    config = config_from(args, scenarios)
    runnable = [n for n in scenarios if set(find(n).topologies) & set(config.topologies)]
    if split(args.scenario) and runnable != scenarios:
        name = next(n for n in scenarios if n not in runnable)
        raise UsageError(f"scenario {name} runs on --topology {','.join(find(name).topologies)}")
    scenarios = runnable
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out) if args.out else Path("reports") / stamp
    try:  # checked before anything runs: a report that cannot be written is a usage error
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".mqlab-write-check"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot write the report there ({e.strerror})") from None
    for name, reason in missing.items():
        console.print(f"[yellow]missing[/]: {name} ({reason})")
    plans = {t: plan(scenarios, impls, config, t) for t in config.topologies}
    runs = sum(len(p) for p in plans.values()) * len(config.queue_types)
    seconds = sum(estimate(p, config.quick) for p in plans.values()) * len(config.queue_types)
    seconds += BOOT_SECONDS["cluster"] if "cluster" in config.topologies else 0
    console.print(
        f"{runs} runs over {', '.join(config.setups())}: estimated {seconds / 60:.0f} min "
        "on this 2-core machine (more when it is busy)"
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("estimated {task.fields[eta]}"),
        console=console,
    )
    results = new_results(config, impls, scenarios, missing)
    with tempfile.TemporaryDirectory(prefix="mqlab-lab-") as scratch, progress:
        bar = progress.add_task("starting", total=runs, eta=f"{seconds / 60:.0f} min")

        def on_run(record: RunRecord) -> None:
            status = (
                "[red]failed[/]"
                if record.error
                else "[yellow]skipped[/]"
                if record.skipped
                else "[green]ok[/]"
            )
            reason = record.error or record.skipped
            progress.console.print(
                f"{status} {record.setup} {record.scenario} / {record.impl} #{record.repeat} "
                f"({record.seconds:.1f} s)" + (f": {reason}" if reason else "")
            )
            progress.update(bar, advance=1, description=f"{record.setup} {record.scenario}")

        for topology in config.topologies:
            with topology_node(topology, args, scenarios) as (broker, unavailable):
                if broker is not None:
                    progress.console.print(broker.describe())
                    if results.meta["broker"]["provider"] == "none":
                        results.meta["broker"] = broker_facts(broker)
                for queue_type in config.queue_types:
                    setup = f"{queue_type}/{topology}"
                    if broker is None:
                        skip_all(results, plans[topology], setup, unavailable, on_run)
                        continue
                    lab = Lab(broker, Path(scratch), config, setup)
                    with lab.environment({"MQLAB_QUEUE_TYPE": queue_type}):
                        run_setup(lab, impls, plans[topology], results, on_run)
        finish(results)
        if args.keep_journals:
            shutil.copytree(Path(scratch) / "journals", out_dir / "journals", dirs_exist_ok=True)
            shutil.copytree(Path(scratch) / "logs", out_dir / "logs", dirs_exist_ok=True)
        relocate(results, Path(scratch), kept=args.keep_journals)
    drawn = plot.draw(results, out_dir)
    path = markdown.write(results, out_dir, drawn)
    for table in markdown.tables(results):
        for part in render(table, max(console.width, 80)):
            console.print(part)
    for line in markdown.reading(results):
        console.print(f"- {line}")
    console.print(f"report: {path}  ({results.meta['seconds']:.0f} s)")
    return 0


@contextlib.contextmanager
def topology_node(
    topology: str, args: argparse.Namespace, scenarios: list[str]
) -> Iterator[tuple[Node | None, str]]:
    """The broker of ``topology`` for the block, or ``(None, why)`` when a cluster cannot be
    provisioned here (a single node that cannot be provisioned is an error, as before). The
    cluster is the ``netns`` one (its links can be cut) when one of ``scenarios`` asks for it
    and this machine can run it (:func:`testbed.netns.why_unavailable`)."""
    if topology == "single":
        with lab_node(args.amqp_url, args.management_url) as broker:
            yield broker, ""
        return
    with contextlib.ExitStack() as stack:
        try:
            kind = "cluster"
            if any(find(n).cluster_kind == "netns" for n in scenarios) and not why_unavailable():
                kind = "netns"
            broker = stack.enter_context(provision(kind))
        except (MqlabError, ValueError, RuntimeError, TimeoutError) as e:
            yield None, f"no cluster on this machine ({e})"
            return
        yield broker, ""


def relocate(results: Results, scratch: Path, kept: bool) -> None:
    """Rewrite the scratch-directory paths in ``results``' samples (journals).

    Kept (``--keep-journals``): relative to the report directory (``journals/001-x.db``), where
    they were copied. Not kept: the file name only, since the scratch directory is removed.
    Sets ``meta["journals_kept"]`` for the report's footer.
    """
    root = str(scratch)

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and value.startswith(root + os.sep):
            path = Path(value).relative_to(scratch)
            return str(path) if kept else path.name
        return value

    for record in results.runs:
        record.samples = fix(record.samples)
    results.meta["journals_kept"] = kept
