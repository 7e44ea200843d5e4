"""The consistency checks of a finished run: each scenario's own, over every run of results.json.

``mqlab compare --keep-journals`` leaves results.json, report.md and the journals side by side;
:func:`check` recomputes every figure from the journals or the raw samples it came from
(:attr:`lab.scenario.Scenario.check`, given a :class:`Checker`) and returns every
disagreement. The end-to-end test asserts there is none, and that a tampered results.json is
caught.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.report.stats import summarize
from lab.run import cost
from shared.journal import Execution, by_message, read


@dataclass
class Checker:
    """What a scenario's ``check`` gets: the output directory, results.json and report.md.

    Attributes:
        out: the report directory (journals kept under ``journals/``).
        results: results.json, as loaded.
        report: report.md's text.
        problems: every disagreement found so far.
    """

    out: Path
    results: dict[str, Any]
    report: str
    problems: list[str] = field(default_factory=list)

    def rows(self, samples: dict[str, Any]) -> list[Execution]:
        """The journal a run's ``samples["journal"]`` names."""
        return read(self.out / "journals" / Path(samples["journal"]).name)

    def close(self, reported: float | None, recomputed: float, what: str) -> None:
        """Record a problem unless ``reported`` equals ``recomputed`` (to 1e-6)."""
        if reported is None or not math.isclose(reported, recomputed, rel_tol=1e-6, abs_tol=1e-6):
            self.problems.append(f"{what}: reported {reported}, recomputed {recomputed}")

    def shown(self, text: str, where: str) -> None:
        """Record a problem unless report.md shows ``text``."""
        if text not in self.report:
            self.problems.append(f"{where}: report.md lacks {text!r}")

    def run(self, scenario: str, impl: str, repeat: int, setup: str) -> dict[str, Any] | None:
        """Another run of results.json (say, the baseline of the same repeat)."""
        return next(
            (
                r
                for r in self.results["runs"]
                if r["scenario"] == scenario
                and r["impl"] == impl
                and r["repeat"] == repeat
                and r["setup"] == setup
            ),
            None,
        )


def check(out: Path, results: dict[str, Any]) -> list[str]:
    """Every disagreement between ``results``, the journals under ``out`` and report.md."""
    from lab.scenarios import find  # the scenarios import Checker from here

    checker = Checker(out, results, (out / "report.md").read_text())
    check_figures(checker)
    for run in results["runs"]:
        if run["error"] or run["skipped"]:
            continue
        try:
            find(run["scenario"]).check(checker, run)
        except (KeyError, ValueError, TypeError) as e:
            checker.problems.append(f"{run['scenario']}/{run['impl']}: cannot check ({e!r})")
    return checker.problems


def check_outcome(c: Checker, run: dict[str, Any], key: str) -> None:
    """``key`` (% finished), lost and duplicates recomputed from the journal."""
    where = f"{run['scenario']}/{run['impl']}"
    m, s = run["metrics"], run["samples"]
    rows = c.rows(s)
    runs = by_message(rows)
    finished = {k for k, v in runs.items() if any(e.finished for e in v)}
    share = 100 * len(finished) / s["published"]
    c.close(m[key], share, f"{where} {key}")
    c.close(m["lost"], s["published"] - len(finished), f"{where} lost")
    c.close(m["duplicate_executions"], len(rows) - len(runs), f"{where} duplicates")
    if s["executions"] != len(rows):
        c.problems.append(f"{where}: {s['executions']} executions, journal has {len(rows)}")
    c.shown(f"{share:.1f}%", where)


def check_cost(
    c: Checker, where: str, drained: dict[str, Any], m: dict[str, Any], label: str, tol: float
) -> None:
    """A drain's CPU-per-task figures (:func:`lab.run.cost.record`) recomputed from its
    windows, and each against the observer's own reading of ``/proc``
    (:func:`lab.run.cost.agrees`: within ``tol`` plus the clock's resolution)."""
    for who in ("consumer", "broker"):
        key = f"cpu_{label}_us" if who == "consumer" else f"broker_cpu_{label}_us"
        mine = cost.per_task_us(drained["lab"], who)
        if mine is None:
            if m.get(key) is not None:
                c.problems.append(f"{where}: {who} CPU reported without a reading")
            continue
        c.close(m[key], mine, f"{where} {who} CPU")
        other = cost.per_task_us(drained["observer"], who)
        if other is None:
            c.problems.append(f"{where}: no independent {who} CPU reading")
        elif not cost.agrees(mine, other, drained["lab"]["r1"], tol):
            c.problems.append(
                f"{where} {who} CPU: lab {mine:.1f} us/task, observer {other:.1f} us/task"
            )


def check_figures(c: Checker) -> None:
    """Every figure of results.json's ``figures`` (median, 95% interval, n) recomputed from the
    raw metrics of its runs (:func:`lab.report.stats.summarize`; a percentile figure of one
    repeat from its samples, :func:`lab.report.view.sampled`), and none left out."""
    from lab.report.view import Row, View, sampled
    from lab.run.runner import load

    view = View(load(c.results))
    raw: dict[tuple[str, str, str, str], list[float]] = {}
    for run in c.results["runs"]:
        if run["error"] is None:
            for metric, v in run["metrics"].items():
                if v is not None:
                    key = (run["scenario"], run["impl"], run["setup"], metric)
                    raw.setdefault(key, []).append(v)
    listed = set()
    for f in c.results.get("figures", []):
        key = (f["scenario"], f["row"], f["setup"], f["metric"])
        listed.add(key)
        runs = [r for r in view.runs(key[0], Row(key[1], key[2])) if r.error is None]
        s = sampled(key[0], key[3], runs, summarize(raw.get(key, [])))
        where = "/".join(key)
        if s is None:
            c.problems.append(f"{where}: a figure without runs")
            continue
        c.close(f["median"], s.median, f"{where} median")
        if f["n"] != s.n:
            c.problems.append(f"{where}: n {f['n']}, runs {s.n}")
        if (f["ci"] is None) != (s.ci is None):
            c.problems.append(f"{where}: interval {f['ci']}, recomputed {s.ci}")
        elif s.ci is not None:
            c.close(f["ci"][0], s.ci[0], f"{where} interval low")
            c.close(f["ci"][1], s.ci[1], f"{where} interval high")
    for key in sorted(set(raw) - listed):
        c.problems.append(f"{'/'.join(key)}: measured but not among the figures")
