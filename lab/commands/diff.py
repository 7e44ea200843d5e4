"""``mqlab diff OLD NEW``: two runs' results.json side by side (:mod:`lab.report.diff`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lab.commands.usage import UsageError, console
from lab.report import diff
from lab.run.runner import Results, load


def read(path: str) -> Results:
    """The results of ``path`` (a results.json, or a report directory holding one).

    Raises:
        UsageError: no such file, or not a results.json.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    try:
        return load(json.loads(file.read_text()))
    except FileNotFoundError:
        raise UsageError(f"{path}: no results.json there") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a results.json of mqlab compare ({e})") from None


def cmd_diff(args: argparse.Namespace) -> int:
    old, new = read(args.old), read(args.new)
    text = diff.markdown(old, new, (args.old, args.new), only=args.changes)
    console.print(text, markup=False, highlight=False)
    return 0
