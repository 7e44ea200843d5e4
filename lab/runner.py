"""Runs the selected scenarios for the selected implementations and collects every sample.

Order: scenario by scenario; within a scenario, repeat by repeat; within a repeat, the bare
pika baseline (throughput only) and then each implementation, so slow drift of the machine
spreads over all of them. Every queue of every implementation is deleted before each run. A
run that raises :class:`~lab.harness.ScenarioFailed` (or any other error) is recorded with its
reason and the next run starts; one that raises :class:`~lab.harness.ScenarioSkipped` (it
cannot run on this lab, e.g. it must kill a broker the lab does not own) is recorded as skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from lab.harness import Lab, Outcome, ScenarioFailed, ScenarioSkipped
from lab.scenarios import ALL, throughput
from shared.impl import Implementation

BASELINE = "baseline"
"""The implementation id under which the bare pika loop's runs are recorded."""

LIBRARIES = ("pika", "celery", "kombu", "dramatiq", "requests", "matplotlib", "rich", "psutil")


@dataclass
class RunRecord:
    """One scenario run for one implementation (or the baseline), as stored in results.json.

    Attributes:
        scenario: scenario name.
        impl: implementation id, or ``"baseline"``.
        repeat: 1-based repeat number.
        seconds: wall time of the run.
        metrics: the figures (see :class:`lab.harness.Outcome`).
        samples: raw samples.
        notes: remarks.
        error: why the run failed, or ``None``.
        skipped: why the run was skipped (it cannot run on this lab), or ``None``.
    """

    scenario: str
    impl: str
    repeat: int
    seconds: float = 0.0
    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None


@dataclass
class Results:
    """Everything one ``mqlab compare`` measured, plus what it needs to be read later.

    Attributes:
        meta: versions, machine, timing.
        config: the settings used (:meth:`lab.harness.Config.as_dict`).
        implementations: ids of the implementations measured.
        missing: implementations not available, with the reason.
        scenarios: scenario names run.
        runs: every run, in order.
    """

    meta: dict[str, Any]
    config: dict[str, Any]
    implementations: list[str]
    missing: dict[str, str]
    scenarios: list[str]
    runs: list[RunRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The results as JSON-able data."""
        return asdict(self)


def machine(lab: Lab) -> dict[str, Any]:
    """Versions and machine facts for the report (RabbitMQ/Erlang from the management API)."""
    versions = {}
    for lib in LIBRARIES:
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
        "broker": {**lab.broker.management.versions(), "provider": lab.broker.provider},
        "python": platform.python_version(),
        "libraries": versions,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def plan(
    scenarios: list[str], impls: list[Implementation], repeat: int
) -> list[tuple[str, str, int]]:
    """The runs, in order: ``(scenario, impl id or "baseline", repeat)``."""
    out: list[tuple[str, str, int]] = []
    for name in scenarios:
        for r in range(1, repeat + 1):
            ids = ([BASELINE] if name == throughput.NAME else []) + [i.name for i in impls]
            out.extend((name, impl, r) for impl in ids)
    return out


def run_one(lab: Lab, impls: list[Implementation], scenario: str, impl: str) -> Outcome:
    """Run one scenario for one implementation on clean queues; raises what the scenario does."""
    lab.reset(impls)
    try:
        if impl == BASELINE:
            return throughput.run_baseline(lab)
        target = next(i for i in impls if i.name == impl)
        outcome: Outcome = ALL[scenario].run(lab, target)
        return outcome
    finally:
        lab.stop_all()


def compare(
    lab: Lab,
    impls: list[Implementation],
    scenarios: list[str],
    missing: dict[str, str],
    on_run: Callable[[RunRecord, int, int], None] | None = None,
) -> Results:
    """Run every planned run and return the results (never raises for a failed run).

    Parameters:
        lab: the lab (broker, scratch directory, settings).
        impls: the implementations to measure.
        scenarios: scenario names, in :data:`lab.scenarios.ALL` order.
        missing: implementations asked for (or known) but not available, with the reason.
        on_run: called after each run with the record, its index (1-based) and the total.
    """
    started = time.time()
    results = Results(
        meta={"started_at": started, **machine(lab)},
        config=lab.config.as_dict(),
        implementations=[i.name for i in impls],
        missing=missing,
        scenarios=scenarios,
    )
    todo = plan(scenarios, impls, lab.config.repeat)
    for index, (scenario, impl, repeat) in enumerate(todo, 1):
        record = RunRecord(scenario, impl, repeat)
        t0 = time.perf_counter()
        try:
            outcome = run_one(lab, impls, scenario, impl)
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
                lab.broker.start()
        record.seconds = time.perf_counter() - t0
        results.runs.append(record)
        if on_run:
            on_run(record, index, len(todo))
    results.meta["finished_at"] = time.time()
    results.meta["seconds"] = results.meta["finished_at"] - started
    return results
