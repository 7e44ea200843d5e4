"""End to end: ``mqlab compare --quick`` on its own private broker, checked against its journals.

The figures in results.json are recomputed from the journals the workers wrote (kept with
``--keep-journals``), and the report's tables are checked against results.json: counts add up
and percentages match, whatever the numbers are. A tampered results.json must fail the same
checks (negative control).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.stats import percentile
from shared import implementations
from shared.journal import Execution, by_message, read


def _rows(out: Path, samples: dict[str, Any]) -> list[Execution]:
    return read(out / "journals" / Path(samples["journal"]).name)


def _close(a: float | None, b: float, what: str, problems: list[str]) -> None:
    if a is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6):
        problems.append(f"{what}: reported {a}, journal says {b}")


def check(out: Path, results: dict[str, Any]) -> list[str]:
    """Every disagreement between results.json, the journals and report.md."""
    problems: list[str] = []
    report = (out / "report.md").read_text()
    for run in results["runs"]:
        if run["error"] or run["impl"] == "baseline":
            continue
        m, s, where = run["metrics"], run["samples"], f"{run['scenario']}/{run['impl']}"
        if run["scenario"] == "throughput":
            for p in results["config"]["throughput_prefetch"]:
                rows = _rows(out, s[f"p{p}"])
                done = [e for e in rows if e.finished_at is not None]
                ids = {e.message_id for e in done}
                if len(ids) != s[f"p{p}"]["published"]:
                    problems.append(f"{where} p{p}: {len(ids)} finished of {s[f'p{p}']}")
                span = max(e.finished_at or 0 for e in done) - min(e.started_at for e in done)
                _close(m[f"consume_p{p}_per_s"], len(ids) / span, f"{where} p{p} rate", problems)
                # the table shows the rate, and its ratio to the baseline of the same repeat
                base = next(
                    r for r in results["runs"]
                    if r["impl"] == "baseline" and r["repeat"] == run["repeat"]
                )  # fmt: skip
                ratio = m[f"consume_p{p}_per_s"] / base["metrics"][f"consume_p{p}_per_s"]
                text = f"{m[f'consume_p{p}_per_s']:,.0f}/s ({ratio:.2f}x bare)"
                if text not in report:
                    problems.append(f"{where}: report.md lacks {text!r}")
        elif run["scenario"] == "latency":
            rows = [e for e in _rows(out, s) if e.finished_at is not None]
            if len(rows) != results["config"]["latency_n"]:
                problems.append(f"{where}: {len(rows)} rows for {results['config']['latency_n']}")
            starts = [(e.started_at - e.published_at) * 1000 for e in rows]
            _close(m["start_p50_ms"], percentile(starts, 50), f"{where} p50", problems)
            _close(m["start_p99_ms"], percentile(starts, 99), f"{where} p99", problems)
        elif run["scenario"] == "fairness":
            for label in ("p1", "unlimited"):
                rows = [e for e in _rows(out, s[label]) if e.finished_at is not None]
                fast = sum(1 for e in rows if e.worker == "fast")
                if len(rows) != s[label]["tasks"]:
                    problems.append(f"{where} {label}: {len(rows)} finished of {s[label]}")
                share = 100 * fast / len(rows)
                _close(m[f"fast_share_{label}_pct"], share, f"{where} {label} share", problems)
                if f"{share:.1f}%" not in report:
                    problems.append(f"{where}: report.md lacks {share:.1f}%")
        elif run["scenario"] in ("crash", "restart"):
            rows = _rows(out, s)
            runs = by_message(rows)
            finished = {k for k, v in runs.items() if any(e.finished for e in v)}
            pct = 100 * len(finished) / s["published"]
            key = "completed_pct" if run["scenario"] == "crash" else "survived_pct"
            _close(m[key], pct, f"{where} {key}", problems)
            _close(m["lost"], s["published"] - len(finished), f"{where} lost", problems)
            dups = len(rows) - len(runs)
            _close(m["duplicate_executions"], dups, f"{where} duplicates", problems)
            if s["executions"] != len(rows):
                problems.append(f"{where}: {s['executions']} executions, journal has {len(rows)}")
            if f"{pct:.1f}%" not in report:
                problems.append(f"{where}: report.md lacks {pct:.1f}%")
    return problems


@pytest.mark.timeout(240)
def test_compare_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", "compare", "--quick", "--out", str(out),
         "--keep-journals"],
        capture_output=True,
        text=True,
        timeout=230,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for name in ("report.md", "throughput.png", "latency.png", "fairness.png", "outcomes.png"):
        assert (out / name).stat().st_size > 0, name

    # every available implementation ran every scenario; the missing ones are listed, not faked
    assert results["implementations"] == list(implementations.available())
    assert results["missing"] == implementations.missing()
    expected = {"throughput", "latency", "fairness", "crash", "restart", "footprint"}
    for impl in results["implementations"]:
        assert {r["scenario"] for r in results["runs"] if r["impl"] == impl} == expected
    report = (out / "report.md").read_text()
    for name in results["missing"]:
        assert f"| {name} |" in report and "missing" in report
    assert results["meta"]["broker"]["rabbitmq"] in report
    errors = [(r["scenario"], r["impl"], r["error"]) for r in results["runs"] if r["error"]]
    assert not errors, errors

    assert check(out, results) == []

    # negative control: tampered figures are caught
    tampered = json.loads(json.dumps(results))
    crash = next(r for r in tampered["runs"] if r["scenario"] == "crash")
    crash["metrics"]["completed_pct"] -= 1.0
    crash["metrics"]["duplicate_executions"] += 1
    problems = check(out, tampered)
    assert any("completed_pct" in p for p in problems), problems
    assert any("duplicates" in p for p in problems), problems
