"""End to end: ``mqlab compare --quick`` on its own private broker, checked against its journals.

The figures in results.json are recomputed from the journals the workers wrote (kept with
``--keep-journals``), and the report's tables are checked against results.json: counts add up
and percentages match, whatever the numbers are. A tampered results.json must fail the same
checks (negative control).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lab.cli import scenario_listing
from lab.commands.compare import parse_sets
from lab.commands.usage import UsageError
from lab.report import decision, diff, markdown
from lab.report.checks import Checker, check, check_figures
from lab.report.stats import Summary, percentile, summarize
from lab.report.view import Row, View, cell, run_status
from lab.run import cost
from lab.run.config import Config
from lab.run.drain import Readings, drain_rate
from lab.run.provenance import CLOCK_TICK_S
from lab.run.runner import RunRecord, finish, new_results, plan, skip_all
from lab.scenarios import ALL
from lab.scenarios.nodeloss import consumption_gap
from shared.exit_codes import ExitCode
from shared.journal import Execution, read
from testbed import registry
from testbed.node import Node


@pytest.mark.broker  # `mqlab compare` starts its own private node
@pytest.mark.timeout(900)  # a hang guard, not a speed limit: --quick with four implementations
# (six rows) takes 3-5 min on this 2-core machine, more while other tests load it
def test_compare_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", "compare", "--quick", "--out", str(out),
         "--keep-journals"],
        capture_output=True,
        text=True,
        timeout=890,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    charts = ("throughput", "throughput_cpu", "latency", "latency_cdf", "scaling", "fairness",
              "crash", "restart", "footprint")  # fmt: skip
    for name in ("report.md", *[f"{c}.png" for c in charts]):
        assert (out / name).stat().st_size > 0, name

    # every available implementation ran every single-node scenario (node loss needs a
    # cluster); the missing ones are listed, not faked
    assert results["implementations"] == list(registry.available())
    assert results["missing"] == registry.missing()
    assert results["setups"] == ["classic/single"]
    expected = {n for n, s in ALL.items() if "single" in s.topologies}
    for impl in results["implementations"]:
        assert {r["scenario"] for r in results["runs"] if r["impl"] == impl} == expected
    # the defaults rows stand beside the hardened ones where the scenario has them (restart's
    # only in a full run: each one is a broker restart)
    rows = {(r["scenario"], r["impl"]) for r in results["runs"]}
    for impl in {"celery", "dramatiq", "faststream"} & set(results["implementations"]):
        for scenario in ("throughput", "crash"):
            assert (scenario, f"{impl}-defaults") in rows, (scenario, impl)
        assert ("restart", f"{impl}-defaults") not in rows
    full = plan(["restart"], list(registry.available().values()), Config(), "single")
    assert {t.name for _s, t, _r in full if t} >= {
        "celery-defaults",
        "dramatiq-defaults",
        "faststream-defaults",
    }
    report = (out / "report.md").read_text()
    for name in results["missing"]:
        assert f"| {name} |" in report and "missing" in report
    assert results["meta"]["broker"]["rabbitmq"] in report
    assert report.index("## Which approach for which need") < report.index("## Machine")
    errors = [(r["scenario"], r["impl"], r["error"]) for r in results["runs"] if r["error"]]
    assert not errors, errors

    # every figure (with its interval and n) is recomputed from the raw runs, and every CPU
    # figure against the observer's own /proc reading, inside check()
    assert check(out, results) == []
    figures = results["figures"]
    assert figures and all(f["n"] == 1 for f in figures)  # one repeat: intervals only where a
    assert {f["scenario"] for f in figures if f["ci"]} == {"latency", "loaded"}  # percentile is
    assert "p50 ms" in report and "] |" in report  # bootstrapped over its run's samples
    for run in (r for r in results["runs"] if r["scenario"] == "throughput"):
        for label in [k for k, v in run["samples"].items() if isinstance(v, dict) and "lab" in v]:
            if run["samples"][label].get("unlimited"):  # FastStream's default: no basic.qos, so
                assert f"cpu_{label}_us" not in run["metrics"]  # the ready count times the push
                assert any("unlimited" in note for note in run["notes"]), run["notes"]
                continue
            assert run["metrics"][f"cpu_{label}_us"] > 0, (run["impl"], label)
            assert run["metrics"][f"broker_cpu_{label}_us"] > 0, (run["impl"], label)
            assert "cpu0_consumer" in run["samples"][label]["observer"], (run["impl"], label)
        assert run["metrics"]["producer_cpu_us"] > 0, run["impl"]
    # provenance: the commit, the command line and every run's load
    assert results["meta"]["git"]["commit"] in report and "compare --quick" in report
    assert all("busy" in r["load"] for r in results["runs"] if not r["skipped"])
    assert "provisional: one repeat" in report and "n=1 (no interval)" in report

    # the journals are where results.json and the footer say they are
    assert results["meta"]["journals_kept"] is True
    assert "kept next to this report" in report
    named = [r["samples"]["journal"] for r in results["runs"] if "journal" in r["samples"]]
    assert named and all((out / j).is_file() for j in named), named

    # negative control: tampered figures are caught, in every kind of check
    tampered = json.loads(json.dumps(results))
    crash = next(r for r in tampered["runs"] if r["scenario"] == "crash")
    crash["metrics"]["completed_pct"] -= 1.0
    crash["metrics"]["duplicate_executions"] += 1
    # pika's row, drained at prefetch 1 and 100 (the runs are in the shuffled order they ran:
    # the first throughput run may be a defaults row, drained once at its own prefetch)
    drain = next(
        r for r in tampered["runs"] if (r["scenario"], r["impl"]) == ("throughput", "pika")
    )
    drain["metrics"]["consume_p1_per_s"] *= 1.2
    drain["metrics"]["cpu_p100_us"] *= 1.2
    drain["samples"]["p1"]["observer"]["cpu0_consumer"] += 10.0  # 10 s of CPU the lab missed
    scaling = next(r for r in tampered["runs"] if r["scenario"] == "scaling")
    scaling["metrics"]["io_c1_eff_pct"] += 5
    loaded = next(r for r in tampered["runs"] if r["scenario"] == "loaded")
    loaded["metrics"]["start_p99_ms"] /= 2
    unlimited = [r for r in tampered["runs"] if r["scenario"] == "throughput"
                 if r["samples"].get("default", {}).get("unlimited")]  # fmt: skip
    for run in unlimited:  # a consume figure timed from the push at unlimited prefetch
        run["metrics"]["consume_default_per_s"] = 1.0
    problems = check(out, tampered)
    assert not unlimited or any("at unlimited prefetch" in p for p in problems), problems
    for what in ("completed_pct", "duplicates", "p1 rate", "c1 io efficiency", "loaded/",
                 "p100 consumer CPU", "p1 consumer CPU: lab", "cpu_p100_us median"):  # fmt: skip
        assert any(what in p for p in problems), (what, problems)


def test_constants_print_without_an_interval_and_statuses_read_right() -> None:
    pct = "{:.1f}%".format
    assert cell(summarize([80.0, 80.0, 80.0]), pct) == "80.0%"
    assert cell(Summary(78.0, 75.0, 80.0, 3, (76.0, 79.5)), pct) == "78.0% [76.0%-79.5%]"
    assert cell(summarize([78.0]), pct) == "78.0%"
    assert run_status(2, 0, 0) == "n=2"
    assert run_status(1, 0, 0) == "n=1 (no interval)"
    assert run_status(2, 0, 2) == "skipped"
    assert run_status(3, 1, 0) == "n=2, 1/3 failed"


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
    result = _mqlab("broker", "purge", "--impl", "pika", "--amqp-url", broker.amqp_url)
    assert result.returncode == 0, result.stderr
    assert f"pika: {pika.task_queue()}: purged 3 ready message(s)" in result.stdout
    # one line per queue it emptied, then one summary line; nothing about absent queues
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("purged 3 ready message(s) from "), result.stdout
    assert len(lines) == 2 and "no such queue" not in result.stdout, result.stdout
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
    assert "mqlab broker up --detach" in lines[0]  # the way to a private node


def test_a_drain_is_timed_from_the_ready_count() -> None:
    # ready count N until the worker starts, then one fewer per task done after prefetch P
    readings = Readings(1000)
    assert not readings.add(0.00, 1000)  # full: the drain has not begun
    assert not readings.add(0.01, 900)  # first reading below N: r1 = 900 ready at t1
    assert not readings.add(0.05, 500)
    assert readings.add(0.10, 0)  # drained: t0
    window = readings.window()
    assert window["r1"] == 900 and drain_rate(window) == pytest.approx(900 / 0.09)
    # negative control: a queue that never filled has no drain to time
    empty = Readings(1000)
    empty.add(0.0, 0)
    with pytest.raises(ValueError):
        empty.window()


def test_node_loss_pause_is_the_longest_gap_after_the_kill() -> None:
    def at(t: float) -> Execution:
        return Execution(0, "m", "work", "pika", "w", 1, False, 0.0, t, t, "ok")

    rows = [at(t) for t in (1.0, 1.1, 1.2, 4.0, 4.1, 9.0)]
    assert consumption_gap(rows, 2.0) == pytest.approx(5.0 - 0.1)  # 4.1 -> 9.0
    rows = rows[:-1]
    assert consumption_gap(rows, 1.15) == pytest.approx(4.0 - 1.2)  # the longest gap is 1.2-4.0
    assert consumption_gap(rows, 2.0) == pytest.approx(4.0 - 2.0)  # measured from the kill
    assert consumption_gap(rows, 10.0) is None  # nothing started after the kill


def test_cluster_scenarios_skip_with_the_reason_when_no_cluster_runs(tmp_path: Path) -> None:
    config = Config.preset(True, ALL.values(), 1, topologies=("single", "cluster"))
    impls = [registry.get("pika")]
    assert "nodeloss" not in {s for s, _t, _r in plan(list(ALL), impls, config, "single")}
    todo = plan(["throughput", "nodeloss"], impls, config, "cluster")
    assert {s for s, _t, _r in todo} == {"throughput", "nodeloss"}
    results = new_results(config, impls, ["throughput", "nodeloss"], {})
    skip_all(results, todo, "classic/cluster", "no cluster on this machine (why)")
    finish(results)
    text = markdown.markdown(results, [])
    assert "Node loss not measured: no cluster on this machine (why)." in text
    assert "| survive a node loss | - | not measured in this run" in text
    assert "| pika (classic/cluster) | - | - | - | - | - | - | skipped |" in text


def test_compare_refuses_a_cluster_scenario_without_the_cluster_and_bad_setups() -> None:
    for args, says in (
        (("--scenario", "nodeloss"), "scenario nodeloss runs on --topology cluster"),
        (("--queue-type", "stream"), "unknown queue type stream"),
        (("--topology", "ring"), "unknown topology ring"),
    ):
        result = _mqlab("compare", "--impl", "pika", *args)
        assert result.returncode == ExitCode.USAGE, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), result.stderr


@pytest.mark.broker  # `mqlab compare` starts its own private node
@pytest.mark.timeout(240)
def test_the_example_scenario_runs_end_to_end_with_its_parameter_set(tmp_path: Path) -> None:
    """The scenario ``docs/architecture.md`` shows is real code: run on demand on a private
    node, its ``--set`` parameter reaches it, and its check holds (and catches a tampered
    figure: the negative control)."""
    out = tmp_path / "report"
    result = _mqlab("compare", "--quick", "--impl", "pika", "--scenario", "example",
                    "--set", "example.n=4", "--out", str(out), "--keep-journals",
                    timeout=230)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["scenarios"] == ["example"]
    assert results["config"]["params"] == {"example": {"n": 4}}
    (run,) = results["runs"]
    assert run["error"] is None and run["metrics"]["took_s"] > 0
    journal = out / run["samples"]["journal"]
    assert len({e.message_id for e in read(journal)}) == 4  # n=4 reached the scenario
    assert check(out, results) == []
    assert "## Example" in (out / "report.md").read_text()
    run["metrics"]["took_s"] *= 2
    assert any(p.startswith("example/pika") for p in check(out, results))


def test_scenario_parameters_are_listed_and_a_bad_set_is_one_line() -> None:
    listing = scenario_listing()
    assert "--set throughput.n=5000  (--quick: 2000)" in listing
    assert "example: Example (on demand" in listing
    # a scenario's deadline is its parameter, not the lab's (lab.run.config keeps lab-wide ones)
    assert "--set restart.resume_deadline=30.0  (--quick: 15.0)" in listing
    assert parse_sets(["restart.resume_deadline=5"]) == {"restart": {"resume_deadline": 5.0}}
    assert "resume_deadline" not in Config().as_dict() and "drain_timeout" in Config().as_dict()
    assert parse_sets(["example.n=4", "scaling.levels=1,2"]) == {
        "example": {"n": 4},
        "scaling": {"levels": (1, 2)},
    }
    for item, says in (
        ("example.n=0", "--set example.n=0: '0' must be a finite number above 0"),
        ("loaded.seconds=inf", "--set loaded.seconds=inf: 'inf' must be a finite number"),
        ("example.n", "--set example.n: expected <scenario>.<parameter>=<value>"),
        ("example.size=3", "--set example.size=3: no such parameter"),
        ("nope.n=3", "--set nope.n=3: no such parameter"),
    ):
        with pytest.raises(UsageError) as raised:
            parse_sets([item])
        assert str(raised.value).startswith(says), (item, str(raised.value))
    # through the command: listed in --help; a bad --set is one line and a usage error
    assert "--set scaling.levels=1,2,4,8,16" in _mqlab("compare", "--help").stdout
    result = _mqlab("compare", "--impl", "pika", "--scenario", "example", "--set", "latency.n=3")
    assert result.returncode == UsageError.exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: --set latency.*: scenario latency is not in this run"], lines


def test_the_decision_table_lists_every_need_when_one_scenario_runs() -> None:
    """Each need is declared by its scenario; those of scenarios not in the run (whose
    parameters are then not in the settings) still get their line, saying so."""
    impls = [registry.get("pika")]
    config = Config.preset(True, [ALL["throughput"]], 1)
    results = new_results(config, impls, ["throughput"], {})
    finish(results)
    text = markdown.markdown(results, [])
    for need in ("most throughput", "CPU-bound work", "survive a node loss", "least code"):
        assert f"| {need} | - | not measured in this run" in text, need
    assert "- Throughput: 2,000 zero-work tasks per drain" in text
    assert "- Scaling:" not in text  # a scenario's settings line only when it runs


def _throughput_results(values: dict[str, list[float]], metric: str = "consume_p100_per_s") -> Any:
    """Results of a throughput run with ``values[row]`` as that row's repeats of ``metric``
    (interleaved: repeat by repeat), broker-free."""
    config = Config.preset(True, [ALL["throughput"]], max(len(v) for v in values.values()))
    results = new_results(config, [registry.get("pika")], ["throughput"], {})
    for repeat in range(1, config.repeat + 1):
        for row, vs in values.items():
            if repeat <= len(vs):
                results.runs.append(
                    RunRecord("throughput", row, repeat, metrics={metric: vs[repeat - 1]})
                )
    finish(results)
    return results


def _need(results: Any, need: str) -> list[str]:
    return next(r for r in decision.rows(View(results)) if r[0] == need)


def test_an_interval_is_the_bootstrap_of_the_median_and_one_repeat_has_none() -> None:
    values = [10.0, 12.0, 11.0, 30.0, 11.5]
    s = summarize(values)
    assert s is not None and s.ci is not None and s.n == 5
    again = scipy_stats.bootstrap(
        (np.asarray(values),), np.median, confidence_level=0.95, n_resamples=2000,
        method="percentile", rng=np.random.default_rng(20),
    ).confidence_interval  # fmt: skip
    assert s.ci == pytest.approx((again.low, again.high))
    assert s.ci[0] <= s.median <= s.ci[1]
    assert summarize([3.0]) == Summary(3.0, 3.0, 3.0, 1, None)
    assert summarize([2.0, 2.0, 2.0]) == Summary(2.0, 2.0, 2.0, 3, (2.0, 2.0))
    wide, narrow = Summary(5, 1, 9, 3, (1.0, 9.0)), Summary(10, 10, 11, 3, (10.0, 11.0))
    assert narrow.clears(wide, lowest=False) and not wide.clears(narrow, lowest=False)
    assert wide.clears(narrow, lowest=True)  # lower is better: wide lies wholly below
    assert not Summary(8, 2, 9, 3, (2.0, 9.0)).clears(wide, lowest=False)  # they overlap


def test_the_decision_names_a_winner_only_where_its_interval_clears_the_runner_up() -> None:
    close = _throughput_results(
        {"pika": [100.0, 104.0, 102.0], "celery": [99.0, 101.0, 103.0], "dramatiq": [50, 51, 52]}
    )
    row = _need(close, "most throughput")
    assert row[1] == "tie: pika, celery (within noise)", row
    assert "vs celery" in row[2] and "n=3" in row[2]
    apart = _throughput_results({"pika": [200.0, 201.0, 202.0], "celery": [99.0, 101.0, 103.0]})
    assert _need(apart, "most throughput")[1] == "pika"
    # negative control: one repeat separates nothing, so its best is provisional
    once = _throughput_results({"pika": [200.0], "celery": [99.0]})
    assert _need(once, "most throughput")[1] == "pika (provisional: one repeat)"
    assert "no intervals, and every winner below is provisional" in markdown.markdown(once, [])
    # lower is better for CPU per task, and the cost backs the throughput need
    cpu = _throughput_results({"pika": [50.0, 51, 52], "celery": [500.0, 510, 520]}, "cpu_p100_us")
    assert _need(cpu, "least CPU per task")[1] == "pika"


def test_the_throughput_reading_holds_the_pika_worker_to_its_cpu_targets() -> None:
    """The pika worker's CPU per task over the bare loop's, paired by repeat, against
    ``PIKA_CPU_BARS`` (1.5x at prefetch 1); the control above the bar reads "misses"."""
    from lab.scenarios import throughput

    def line(pika: list[float]) -> str:
        results = _throughput_results(
            {"pika": pika, "baseline": [100.0, 200.0, 100.0]}, "cpu_p1_us"
        )
        return next(x for x in throughput.reading(View(results)) if "CPU per task against" in x)

    assert "(target at most 1.5x at prefetch 1): 1.40x at prefetch 1 (meets)" in line(
        [140.0, 280.0, 150.0]  # paired: 1.4, 1.4, 1.5 (unpaired medians would give 1.5)
    )
    assert "1.60x at prefetch 1 (misses)" in line([160.0, 320.0, 170.0])


def test_diff_marks_only_the_changes_beyond_noise_and_checks_catch_a_tampered_interval(
    tmp_path: Path,
) -> None:
    old = _throughput_results({"pika": [100.0, 101.0, 102.0], "celery": [50.0, 51.0, 52.0]})
    new = _throughput_results({"pika": [150.0, 151.0, 152.0], "celery": [50.5, 51.0, 51.5]})
    changes, gone, added = diff.compare(old, new)
    marked = {c.key[1]: c.beyond_noise() for c in changes}
    assert marked == {"pika": True, "celery": False} and not gone and not added
    text = diff.markdown(old, new, ("a", "b"))
    assert "| throughput | pika | classic/single | consume_p100_per_s |" in text
    assert text.count("**beyond noise**") == 1 and "+49.5%" in text
    assert "celery" not in diff.markdown(old, new, ("a", "b"), only=True).split("|---")[-1]
    # the figures written to results.json are recomputed from the raw runs; a tampered
    # interval is caught (negative control)
    markdown.write(new, tmp_path, [])
    data = json.loads((tmp_path / "results.json").read_text())

    def problems() -> list[str]:
        checker = Checker(tmp_path, data, "")
        check_figures(checker)
        return checker.problems

    assert problems() == []
    data["figures"][0]["ci"][1] *= 0.9
    assert any("interval high" in p for p in problems())


def test_a_percentile_of_one_repeat_has_its_interval_over_the_samples() -> None:
    config = Config.preset(True, [ALL["latency"]], 1)
    results = new_results(config, [registry.get("pika")], ["latency"], {})
    samples = [float(i % 17) for i in range(60)]
    run = RunRecord("latency", "pika", 1, metrics={"start_p50_ms": percentile(samples, 50)})
    run.samples = {"start_ms": samples}
    results.runs.append(run)
    finish(results)
    s = View(results).summary("latency", Row("pika", "classic/single"), "start_p50_ms")
    assert s is not None and s.n == 1 and s.ci is not None
    assert s.ci[0] <= s.median <= s.ci[1] and s.ci[0] < s.ci[1]
    # negative control: a figure that is not a declared percentile gets no interval from one run
    run.metrics["start_mean_ms"] = 8.0
    mean = View(results).summary("latency", Row("pika", "classic/single"), "start_mean_ms")
    assert mean is not None and mean.ci is None


def test_cpu_per_task_comes_from_a_window_and_two_readings_must_agree() -> None:
    window = {"r1": 1000.0, "cpu1_consumer": 1.0, "cpu0_consumer": 1.5}
    assert cost.per_task_us(window, "consumer") == pytest.approx(500.0)
    assert cost.per_task_us(window, "broker") is None  # not read: no figure, not a 0
    assert cost.tick_share(window) == pytest.approx(CLOCK_TICK_S / 0.5)
    # /proc read directly agrees with psutil on this very process, to a few clock ticks
    sum(i * i for i in range(300_000))  # some CPU of our own
    found = cost.stat_cpu(os.getpid())
    assert found is not None and found[0] == os.getpgid(0)
    assert abs(found[1] - cost.tree_cpu([os.getpid()])) <= 4 * CLOCK_TICK_S
    assert cost.group_cpu(os.getpgid(0)) >= found[1] - CLOCK_TICK_S
    # the agreement allows 10% plus four ticks over the tasks, no more (negative control)
    assert cost.agrees(500.0, 540.0, 1000, 0.10)
    assert not cost.agrees(500.0, 700.0, 1000, 0.10)


def test_a_defaults_row_at_unlimited_prefetch_reads_without_a_consume_figure() -> None:
    """FastStream's defaults row has no consume figure (unlimited prefetch: the ready count
    times the broker's push); the reading still compares its publish, and says so. Control:
    a defaults row with a consume figure gets it printed."""
    from lab.scenarios import throughput

    config = Config.preset(True, [ALL["throughput"]], 1)
    results = new_results(config, [registry.get("faststream")], ["throughput"], {})
    rows: list[tuple[str, dict[str, float | None]]] = [
        ("faststream", {"publish_per_s": 900.0, "consume_p1_per_s": 400.0}),
        ("faststream-defaults", {"publish_per_s": 3000.0}),
        ("celery", {"publish_per_s": 800.0, "consume_p1_per_s": 300.0}),
        ("celery-defaults", {"publish_per_s": 2000.0, "consume_default_per_s": 700.0}),
    ]
    for row, metrics in rows:
        results.runs.append(RunRecord("throughput", row, 1, metrics=metrics))
    finish(results)
    lines = throughput.reading(View(results))
    fast = next(x for x in lines if x.startswith("faststream-defaults"))
    assert "publish 3,000/s" in fast and "consume not timed at the default prefetch" in fast
    slow = next(x for x in lines if x.startswith("celery-defaults"))
    assert "consume 700/s at the default prefetch vs 300/s at prefetch 1" in slow


def test_a_broker_that_does_not_come_back_skips_the_rest_of_its_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run fails on a bug and the broker cannot be started again (seen: a netns cluster that
    answered on no node): the failed run and the reason are recorded, the setup's remaining
    runs are skipped with it, and nothing raises, so the other setups' results are written.
    Control: a broker that starts again lets the next run run."""
    from types import SimpleNamespace

    from lab.run import runner

    def boom(*_args: object) -> None:
        raise RuntimeError("a bug in the scenario")

    monkeypatch.setattr(runner, "run_one", boom)
    todo = plan(["footprint"], [registry.get("pika"), registry.get("celery")], Config(), "single")
    for comes_back in (False, True):

        def start(comes_back: bool = comes_back) -> None:
            if not comes_back:
                raise TimeoutError("waiting for 3 online nodes: running []")

        broker = SimpleNamespace(can_kill=True, start=start)
        lab: Any = SimpleNamespace(broker=broker, setup="classic/single")
        results = new_results(Config(), [registry.get("pika")], ["footprint"], {})
        runner.run_setup(lab, [], todo, results)
        assert len(results.runs) == len(todo) == 2
        first, second = results.runs
        assert first.error is not None and "a bug in the scenario" in first.error
        if comes_back:  # control: the next run ran (and failed on the same bug)
            assert second.skipped is None and second.error is not None
            assert "did not come back" not in first.error
        else:
            assert "did not come back" in first.error and "running []" in first.error
            assert second.skipped is not None and "running []" in second.skipped
