"""PNG charts of a comparison run: each scenario draws its own (see :mod:`lab.plot`)."""

from __future__ import annotations

from pathlib import Path

from lab.runner import Results
from lab.scenarios import ALL
from lab.view import View


def draw(results: Results, out_dir: Path) -> list[Path]:
    """Draw every chart the run has data for into ``out_dir``; return their paths."""
    if not results.implementations:
        return []
    view = View(results)
    return [path for name in results.scenarios for path in ALL[name].charts(view, out_dir)]
