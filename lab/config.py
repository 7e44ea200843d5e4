"""The settings of one ``mqlab compare`` run, the ``--quick`` preset and the time estimate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Config:
    """The settings of one ``mqlab compare`` run (all counts are messages, times seconds).

    Attributes:
        quick: the small-N preset (``--quick``).
        repeat: how many times each scenario runs per row (``--repeat``).
        queue_types: the queue types each scenario runs on (``--queue-type``).
        topologies: ``single`` (one node) and/or ``cluster`` (``--topology``).
        variants: the extra rows measured (:mod:`lab.targets`).
        throughput_n: zero-work tasks per throughput run.
        throughput_prefetch: the prefetch counts the throughput worker drains at.
        drain_poll: how often the lab reads the queue depth while a drain runs, seconds.
        latency_n: messages sent one at a time in the latency scenario.
        loaded_seconds: how long the loaded-latency scenario publishes.
        loaded_fraction: its offered rate as a fraction of the measured capacity.
        scaling_levels: the concurrency levels of the scaling scenario.
        scaling_task_seconds: the I/O task's sleep and the CPU task's work, seconds.
        scaling_tasks_per_slot: tasks per run per unit of concurrency.
        fairness_tasks: tasks in the fairness scenario.
        fairness_dot_seconds: seconds per unit of work there (the slow worker takes 4x).
        fairness_slowdown: the slow worker's slowdown factor.
        crash_tasks: tasks in the crash scenario.
        crash_kills: how many times the victim worker is SIGKILLed mid-task.
        crash_dot_seconds: seconds per unit of work in the crash scenario.
        restart_messages: confirmed messages published before the broker is killed.
        restart_dot_seconds: seconds per unit of work in the restart scenario.
        nodeloss_rate: messages per second published during the node-loss scenario.
        nodeloss_seconds: how long it publishes (the leader is killed a third of the way in).
        resume_deadline: how long a worker has to resume after the broker is back.
        drain_timeout: deadline for draining any queue.
    """

    quick: bool = False
    repeat: int = 1
    queue_types: tuple[str, ...] = ("classic",)
    topologies: tuple[str, ...] = ("single",)
    variants: tuple[str, ...] = ("defaults", "threads")
    throughput_n: int = 5000
    throughput_prefetch: tuple[int, ...] = (1, 100)
    drain_poll: float = 0.005
    latency_n: int = 200
    loaded_seconds: float = 6.0
    loaded_fraction: float = 0.5
    scaling_levels: tuple[int, ...] = (1, 2, 4, 8, 16)
    scaling_task_seconds: float = 0.02
    scaling_tasks_per_slot: int = 30
    fairness_tasks: int = 40
    fairness_dot_seconds: float = 0.05
    fairness_slowdown: float = 4.0
    crash_tasks: int = 200
    crash_kills: int = 5
    crash_dot_seconds: float = 0.05
    restart_messages: int = 1000
    restart_dot_seconds: float = 0.005
    nodeloss_rate: float = 100.0
    nodeloss_seconds: float = 12.0
    resume_deadline: float = 30.0
    drain_timeout: float = 180.0

    @staticmethod
    def preset(quick: bool, repeat: int = 1, **overrides: Any) -> Config:
        """The default settings, or the ``--quick`` ones (small N, fewer levels, shorter tasks
        and deadlines), with ``overrides`` on top."""
        if not quick:
            return Config(repeat=repeat, **overrides)
        base = Config(
            quick=True,
            repeat=repeat,
            throughput_n=3000,  # a prefetch-100 drain must span several readings under load
            latency_n=30,
            loaded_seconds=2.0,
            scaling_levels=(1, 4),
            scaling_tasks_per_slot=12,
            fairness_tasks=20,
            fairness_dot_seconds=0.025,
            crash_tasks=60,
            crash_kills=2,
            restart_messages=200,
            nodeloss_seconds=8.0,
            resume_deadline=15.0,
            drain_timeout=60.0,
        )
        return replace(base, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    def setups(self) -> list[str]:
        """``queue type/topology`` pairs, in run order (``classic/single`` first)."""
        return [f"{q}/{t}" for t in self.topologies for q in self.queue_types]
