"""Runs the selected scenarios for the selected implementations and collects every sample.

Order: setup by setup (queue type and topology); within a setup scenario by scenario; within a
scenario, repeat by repeat: each repeat runs every row (the scenario's baseline if it declares
one, each implementation, its variants) once, in an order shuffled afresh for each repeat,
before the next repeat starts. A busy spell of the machine or its slow drift then falls on
different rows in different repeats instead of on every repeat of one row (the shuffle is seeded
by ``Config.seed``, recorded in results.json, so a run can be replayed in the same order).
Every queue of every implementation is deleted before each run. A run that raises
:class:`~lab.run.harness.ScenarioFailed` (or any other error) is recorded with its reason and
the next run starts; one that raises :class:`~lab.run.harness.ScenarioSkipped` (it cannot run
on this lab, e.g. it must kill a broker the lab does not own) is recorded as skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import psutil

from lab.report.view import BASELINE
from lab.run import provenance
from lab.run.config import Config
from lab.run.harness import Lab, Outcome, ScenarioFailed, ScenarioSkipped
from lab.run.targets import Target, libraries, targets
from lab.scenarios import find
from shared.impl import Implementation
from testbed.node import Node

__all__ = [
    "BASELINE", "Results", "RunRecord", "broker_facts", "estimate", "finish", "load",
    "new_results", "plan", "run_setup", "skip_all",
]  # fmt: skip

TOOLS = ("requests", "matplotlib", "rich", "psutil")
"""The lab's own libraries the report lists beside the implementations' (:mod:`lab.run.targets`)."""


@dataclass
class RunRecord:
    """One scenario run for one implementation (or the baseline), as stored in results.json.

    Attributes:
        scenario: scenario name.
        impl: the row: implementation id, variant (``celery-defaults``) or ``"baseline"``.
        repeat: 1-based repeat number.
        setup: ``<queue type>/<topology>``.
        seconds: wall time of the run.
        metrics: the figures (see :class:`lab.run.harness.Outcome`).
        samples: raw samples.
        notes: remarks.
        error: why the run failed, or ``None``.
        skipped: why the run was skipped (it cannot run on this lab), or ``None``.
        load: the machine's load during the run (:class:`lab.run.provenance.LoadMeter`).
    """

    scenario: str
    impl: str
    repeat: int
    setup: str = "classic/single"
    seconds: float = 0.0
    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    load: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    """Everything one ``mqlab compare`` measured, plus what it needs to be read later.

    Attributes:
        meta: versions, machine, timing.
        config: the settings used (:meth:`lab.run.harness.Config.as_dict`).
        implementations: ids of the implementations measured.
        missing: implementations not available, with the reason.
        scenarios: scenario names run.
        setups: ``<queue type>/<topology>`` pairs run, in order.
        runs: every run, in order.
    """

    meta: dict[str, Any]
    config: dict[str, Any]
    implementations: list[str]
    missing: dict[str, str]
    scenarios: list[str]
    setups: list[str] = field(default_factory=lambda: ["classic/single"])
    runs: list[RunRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The results as JSON-able data."""
        return asdict(self)


def load(data: dict[str, Any]) -> Results:
    """:class:`Results` from results.json's data (keys an older file lacks take their
    defaults; keys this version does not know are ignored)."""
    known = {f.name for f in fields(RunRecord)}
    runs = [RunRecord(**{k: v for k, v in r.items() if k in known}) for r in data["runs"]]
    top = {f.name for f in fields(Results)} - {"runs"}
    return Results(**{k: v for k, v in data.items() if k in top}, runs=runs)


def broker_facts(broker: Node) -> dict[str, str]:
    """RabbitMQ and Erlang versions (management API) and the provider of ``broker``."""
    return {**broker.management.versions(), "provider": broker.provider}


def machine() -> dict[str, Any]:
    """Versions and machine facts for the report (the broker's come from :func:`broker_facts`)."""
    versions = {}
    for lib in (*libraries(), *TOOLS):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    cpu_model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    return {
        "broker": {"rabbitmq": "?", "erlang": "?", "provider": "none"},
        "python": platform.python_version(),
        "libraries": versions,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git": provenance.git(),
        "command": provenance.command_line(),
    }


def plan(
    scenarios: list[str], impls: list[Implementation], config: Config, topology: str
) -> list[tuple[str, Target | None, int]]:
    """The runs of one setup, in order: ``(scenario, target or None for the baseline, repeat)``.

    A scenario runs on ``topology`` only if it declares it. Each repeat holds every row once
    (baseline, implementations, variants), shuffled by a generator seeded with
    ``config.seed`` and the topology, before the next repeat (see the module docstring).
    """
    shuffle = random.Random(f"{config.seed}/{topology}").shuffle
    out: list[tuple[str, Target | None, int]] = []
    for name in scenarios:
        scenario = find(name)
        if topology not in scenario.topologies:
            continue
        wanted = tuple(v for v in scenario.variants if v in config.variants)
        if config.quick and not scenario.quick_variants:
            wanted = ()
        rows: list[Target | None] = [None] if scenario.baseline is not None else []
        rows += targets(impls, wanted)
        for r in range(1, config.repeat + 1):
            order = list(rows)
            shuffle(order)
            out.extend((name, t, r) for t in order)
    return out


def estimate(todo: list[tuple[str, Target | None, int]], quick: bool) -> float:
    """Rough seconds for ``todo`` from each scenario's declared run time on this machine."""
    return sum(find(name).seconds[0 if quick else 1] for name, _t, _r in todo)


def run_one(lab: Lab, impls: list[Implementation], scenario: str, target: Target | None) -> Outcome:
    """Run one scenario for one target on clean queues; raises what the scenario does."""
    lab.reset(impls)
    try:
        if target is None:
            baseline = find(scenario).baseline
            if baseline is None:
                raise ScenarioFailed(f"{scenario} has no baseline")
            return baseline(lab)
        return find(scenario).run(lab, target)
    finally:
        lab.stop_all()


def new_results(
    config: Config, impls: list[Implementation], scenarios: list[str], missing: dict[str, str]
) -> Results:
    """Empty results with the run's metadata (the broker's facts are added by the caller)."""
    return Results(
        meta={"started_at": time.time(), **machine()},
        config=config.as_dict(),
        implementations=[i.name for i in impls],
        missing=missing,
        scenarios=scenarios,
        setups=config.setups(),
    )


def skip_all(
    results: Results,
    todo: list[tuple[str, Target | None, int]],
    setup: str,
    why: str,
    on_run: Callable[[RunRecord], None] | None = None,
) -> None:
    """Record every run of ``todo`` on ``setup`` as skipped for ``why``."""
    for scenario, target, repeat in todo:
        record = RunRecord(scenario, target.name if target else BASELINE, repeat, setup)
        record.skipped = why
        results.runs.append(record)
        if on_run:
            on_run(record)


def run_setup(
    lab: Lab,
    impls: list[Implementation],
    todo: list[tuple[str, Target | None, int]],
    results: Results,
    on_run: Callable[[RunRecord], None] | None = None,
) -> None:
    """Run ``todo`` on ``lab`` (one setup) into ``results`` (never raises for a failed run; a
    broker that does not come back after one skips the setup's remaining runs, with the reason).
    """
    for i, (scenario, target, repeat) in enumerate(todo):
        record = RunRecord(scenario, target.name if target else BASELINE, repeat, lab.setup)
        t0, load, gone = time.perf_counter(), provenance.LoadMeter(), ""
        try:
            outcome = run_one(lab, impls, scenario, target)
            record.metrics, record.samples, record.notes = (
                outcome.metrics,
                outcome.samples,
                outcome.notes,
            )
        except ScenarioSkipped as e:
            record.skipped = str(e)
        except ScenarioFailed as e:
            record.error = str(e)
        except Exception as e:  # a bug or a broken broker must not lose the other results
            record.error = f"{e.__class__.__name__}: {e}"
            record.samples["traceback"] = traceback.format_exc()
            if lab.broker.can_kill:  # a scenario may have left the node down
                try:
                    lab.broker.start()
                except Exception as again:
                    gone = f"the broker did not come back after a failed run: {again}"
                    record.error += f"; {gone}"
        record.seconds = time.perf_counter() - t0
        record.load = load.read()
        results.runs.append(record)
        if on_run:
            on_run(record)
        if gone:
            skip_all(results, todo[i + 1 :], lab.setup, gone, on_run)
            return


def finish(results: Results) -> None:
    """Stamp the end time."""
    results.meta["finished_at"] = time.time()
    results.meta["seconds"] = results.meta["finished_at"] - results.meta["started_at"]
