"""End to end: ``mqlab compare --quick`` on its own private broker, checked against its journals.

The figures in results.json are recomputed from the journals the workers wrote (kept with
``--keep-journals``), and the report's tables are checked against results.json: counts add up
and percentages match, whatever the numbers are. A tampered results.json must fail the same
checks (negative control).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.report import cell, run_status
from lab.stats import Summary, percentile
from shared.journal import Execution, by_message, read
from testbed import registry
from testbed.node import Node


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
            if run["scenario"] == "restart":
                # resumption is read from the journal against the moment the AMQP port was back
                ready, killed = s["amqp_port_ready_at"], s["killed_at"]
                _close(
                    m["broker_down_to_ready_s"], ready - killed, f"{where} down->ready", problems
                )
                firsts = [
                    min(e.started_at for e in rows if e.worker == w and e.started_at >= ready)
                    for w in ("w1", "w2")
                    if any(e.worker == w and e.started_at >= ready for e in rows)
                ]
                _close(m["workers_resumed"], len(firsts), f"{where} workers resumed", problems)
                if firsts:
                    after = max(firsts) - ready
                    _close(m["first_task_after_ready_max_s"], after, f"{where} resume", problems)
                    if f"{after:.2f} s" not in report:
                        problems.append(f"{where}: report.md lacks {after:.2f} s")
        elif run["scenario"] == "footprint":
            rows = _rows(out, s)
            # the figure is spawn -> first started_at; the journal must hold that first start
            if not rows or m["startup_to_first_task_s"] <= 0:
                problems.append(f"{where}: no first task behind the start-up figure")
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
    assert results["implementations"] == list(registry.available())
    assert results["missing"] == registry.missing()
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

    # the journals are where results.json and the footer say they are
    assert results["meta"]["journals_kept"] is True
    assert "kept next to this report" in report
    named = [r["samples"]["journal"] for r in results["runs"] if "journal" in r["samples"]]
    assert named and all((out / j).is_file() for j in named), named
    # footprint has no polled figure left that could contradict the journal's
    assert "start-up to consumer" not in report

    # negative control: tampered figures are caught
    tampered = json.loads(json.dumps(results))
    crash = next(r for r in tampered["runs"] if r["scenario"] == "crash")
    crash["metrics"]["completed_pct"] -= 1.0
    crash["metrics"]["duplicate_executions"] += 1
    problems = check(out, tampered)
    assert any("completed_pct" in p for p in problems), problems
    assert any("duplicates" in p for p in problems), problems


def test_constants_print_without_a_range_and_statuses_read_right() -> None:
    assert cell(Summary(80.0, 80.0, 80.0, 3), lambda v: f"{v:.1f}%") == "80.0%"
    assert cell(Summary(78.0, 75.0, 80.0, 3), lambda v: f"{v:.1f}%") == "78.0% (75.0%-80.0%)"
    assert cell(Summary(78.0, 78.0, 78.0, 1), lambda v: f"{v:.1f}%") == "78.0%"
    assert run_status(2, 0, 0) == "ok"
    assert run_status(2, 0, 2) == "skipped"
    assert run_status(3, 1, 0) == "1/3 failed"


def _mqlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(60)
def test_compare_names_the_management_url_when_its_api_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as amqp, socket.socket() as closed:
        amqp.bind(("127.0.0.1", 0))
        amqp.listen()  # an "AMQP port" that accepts, so only the management API is missing
        closed.bind(("127.0.0.1", 0))
        url = f"amqp://guest:guest@127.0.0.1:{amqp.getsockname()[1]}/"
        api = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = _mqlab("compare", "--amqp-url", url, "--management-url", api, "--out",
                        str(tmp_path), "--impl", "pika", "--scenario", "footprint")  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert api in lines[0] and "MQLAB_MANAGEMENT_URL" in lines[0] and "--management-url" in lines[0]


@pytest.mark.timeout(120)
def test_restart_is_skipped_on_a_broker_the_lab_does_not_own(broker: Node, tmp_path: Path) -> None:
    # negative control in the end-to-end test: on its own node the same scenario runs and is ok
    result = _mqlab("compare", "--amqp-url", broker.amqp_url, "--management-url",
                    broker.management_url, "--impl", "pika", "--scenario", "restart",
                    "--out", str(tmp_path), timeout=110)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    assert "| pika | - | - | - | - | - | - | skipped |" in report, report
    assert "skipped: an external broker cannot be killed by the lab" in report
    assert "failed" not in report
    run = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    assert run["error"] is None and run["skipped"]
    assert "removed after the run" in report  # no --keep-journals: the footer says so


@pytest.mark.timeout(60)
def test_broker_purge_empties_only_the_chosen_implementations_queues(broker: Node) -> None:
    pika, others = registry.get("pika"), list(registry.available().values())
    for impl in others:
        impl.publish_work(["task"] * 3, amqp_url=broker.amqp_url)
    published = time.time()
    for impl in others:
        broker.management.wait_for_queue(impl.task_queue(), 10, ready=3, fresh_after=published)
    result = _mqlab("broker", "purge", "--impl", "pika", "--amqp-url", broker.amqp_url,
                    "--management-url", broker.management_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"pika: {pika.task_queue()}: purged 3 ready message(s)" in result.stdout
    purged = time.time()
    broker.management.wait_for_queue(pika.task_queue(), 10, ready=0, fresh_after=purged)
    for impl in others:  # negative control: the other implementations' queues keep theirs
        if impl.name != "pika":
            broker.management.wait_for_queue(impl.task_queue(), 10, ready=3, fresh_after=purged)


def test_broker_purge_unreachable_is_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"amqp://guest:guest@127.0.0.1:{closed.getsockname()[1]}/"
        result = _mqlab("broker", "purge", "--amqp-url", url)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    shown = url.replace("guest:guest@", "guest:**@")  # the password is never printed
    assert len(lines) == 1 and lines[0].startswith("error: ") and shown in lines[0], result.stderr
    assert "guest:guest" not in result.stderr
