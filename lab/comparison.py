"""``mqlab compare``: run the scenarios, then write the report, results and charts."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from lab import charts, report
from lab.common import UsageError, console, select_implementations, select_scenarios, split
from lab.harness import Config, Lab
from lab.nodes import lab_node
from lab.runner import Results, RunRecord, compare


def render(table: report.Table) -> RichTable:
    """A report table as a rich table for the terminal."""
    out = RichTable(title=table.title, title_justify="left")
    for i, header in enumerate(table.headers):
        out.add_column(header, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    impls, missing = select_implementations(split(args.impl))
    scenarios = select_scenarios(split(args.scenario))
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if args.management_url and not args.amqp_url:
        raise UsageError("--management-url goes with --amqp-url (a private node has its own)")
    config = Config.preset(args.quick, args.repeat)
    if args.throughput_n is not None:
        if args.throughput_n < 1:
            raise UsageError("--throughput-n must be at least 1")
        config = Config(**{**config.__dict__, "throughput_n": args.throughput_n})
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out) if args.out else Path("reports") / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, reason in missing.items():
        console.print(f"[yellow]missing[/]: {name} ({reason})")

    with (
        tempfile.TemporaryDirectory(prefix="mqlab-lab-") as scratch,
        lab_node(args.amqp_url, args.management_url) as broker,
    ):
        console.print(broker.describe())
        lab = Lab(broker, Path(scratch), config)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bar = progress.add_task("running", total=None)

            def on_run(record: RunRecord, index: int, total: int) -> None:
                status = "[red]failed[/]" if record.error else "[green]ok[/]"
                progress.console.print(
                    f"{status} {record.scenario} / {record.impl} #{record.repeat} "
                    f"({record.seconds:.1f} s)" + (f": {record.error}" if record.error else "")
                )
                progress.update(bar, total=total, completed=index, description=record.scenario)

            results = compare(lab, impls, scenarios, missing, on_run)
        if args.keep_journals:
            shutil.copytree(Path(scratch) / "journals", out_dir / "journals", dirs_exist_ok=True)
            shutil.copytree(Path(scratch) / "logs", out_dir / "logs", dirs_exist_ok=True)
        relocate(results, Path(scratch), kept=args.keep_journals)
    drawn = charts.draw(results, out_dir)
    path = report.write(results, out_dir, drawn)
    for table in report.tables(results):
        console.print(render(table))
    for line in report.reading(results):
        console.print(f"- {line}")
    console.print(f"report: {path}  ({results.meta['seconds']:.0f} s)")
    return 0


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
