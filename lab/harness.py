"""What every scenario shares: the broker, fresh journals, worker processes, clean queues.

A scenario asks the :class:`Lab` for a journal file, starts workers through the implementation
interface (:meth:`shared.impl.Implementation.worker_command`) as process groups
(:class:`testbed.process.GroupProcess`), and reads its figures back from the journal and the
broker's management API. Nothing here knows which framework a worker runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from shared.impl import Implementation, WorkerSpec
from shared.journal import Execution, Journal
from testbed.node import Node
from testbed.process import GroupProcess, wait_until

BASELINE_QUEUE = "mqlab_lab_baseline"
"""The queue the bare pika baseline publishes to and consumes from."""


class ScenarioFailed(Exception):
    """A scenario could not produce its figures for one implementation; ``str()`` says why.

    The runner records it as that run's result and goes on with the next run.
    """


class ScenarioSkipped(Exception):
    """A scenario cannot run on this lab at all (say, it must kill a broker the lab does not
    own); ``str()`` says why. The runner records the run as skipped, not failed."""


@dataclass(frozen=True)
class Config:
    """The settings of one ``mqlab compare`` run (all counts are messages, times seconds).

    Attributes:
        quick: the small-N preset (``--quick``).
        repeat: how many times each scenario runs per implementation (``--repeat``).
        throughput_n: zero-work tasks per throughput run.
        throughput_prefetch: the prefetch counts the throughput worker drains at.
        latency_n: messages sent one at a time in the latency scenario.
        fairness_tasks: tasks in the fairness scenario.
        fairness_dot_seconds: seconds per unit of work there (the slow worker takes 4x).
        fairness_slowdown: the slow worker's slowdown factor.
        crash_tasks: tasks in the crash scenario.
        crash_kills: how many times the victim worker is SIGKILLed mid-task.
        crash_dot_seconds: seconds per unit of work in the crash scenario.
        restart_messages: confirmed messages published before the broker is killed.
        restart_dot_seconds: seconds per unit of work in the restart scenario.
        resume_deadline: how long a worker has to resume after the broker is back.
        drain_timeout: deadline for draining any queue.
    """

    quick: bool = False
    repeat: int = 1
    throughput_n: int = 5000
    throughput_prefetch: tuple[int, ...] = (1, 100)
    latency_n: int = 200
    fairness_tasks: int = 40
    fairness_dot_seconds: float = 0.05
    fairness_slowdown: float = 4.0
    crash_tasks: int = 200
    crash_kills: int = 5
    crash_dot_seconds: float = 0.05
    restart_messages: int = 1000
    restart_dot_seconds: float = 0.005
    resume_deadline: float = 30.0
    drain_timeout: float = 180.0

    @staticmethod
    def preset(quick: bool, repeat: int = 1) -> Config:
        """The default settings, or the ``--quick`` ones (small N, shorter tasks and deadlines:
        85-100 s of runs for all three implementations on 2 cores, plus ~15 s to boot the lab's
        node, import and draw; most of it is worker start-ups and the three broker restarts)."""
        if not quick:
            return Config(repeat=repeat)
        return Config(
            quick=True,
            repeat=repeat,
            throughput_n=500,
            latency_n=50,
            fairness_dot_seconds=0.025,
            crash_tasks=100,
            crash_kills=3,
            restart_messages=200,
            resume_deadline=15.0,
            drain_timeout=60.0,
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class Worker:
    """One worker process started by the lab.

    Attributes:
        name: the worker name it writes into the journal.
        process: its process group.
        spawned_at: epoch seconds when the process was started.
        impl: the implementation it runs.
    """

    name: str
    process: GroupProcess
    spawned_at: float
    impl: Implementation
    spec: WorkerSpec = field(repr=False)

    def rss_mb(self) -> float:
        """Resident set size of the worker's whole process group, MiB (psutil ``rss``).

        A framework that forks pool children is counted with its children (pages they share
        are counted once per process, as ``ps`` does).
        """
        total = 0
        for pid in self.process.pids():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += psutil.Process(pid).memory_info().rss
        return total / (1024 * 1024)

    def log_tail(self, lines: int = 5) -> str:
        """The last ``lines`` lines of the worker's output, joined by `` | ``."""
        text = self.process.output().strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])


class Lab:
    """The shared state of one comparison run.

    Parameters:
        broker: the broker every scenario uses (a private node unless ``--amqp-url``).
        workdir: scratch directory for journals and worker logs.
        config: the run's settings.
    """

    def __init__(self, broker: Node, workdir: Path, config: Config) -> None:
        self.broker = broker
        self.workdir = workdir
        self.config = config
        self.workers: list[Worker] = []
        self._serial = 0
        (workdir / "journals").mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def amqp_url(self) -> str:
        """The broker's AMQP URI."""
        return self.broker.amqp_url

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    # -- queues and journals ----------------------------------------------------------------

    def reset(self, impls: list[Implementation]) -> None:
        """Delete every queue of every implementation and the baseline queue (with messages)."""
        for impl in impls:
            for queue in impl.queues():
                self.broker.management.delete_queue(queue)
        self.broker.management.delete_queue(BASELINE_QUEUE)

    def journal(self, label: str) -> str:
        """Path of a new, empty journal file for one run labelled ``label``."""
        path = self.workdir / "journals" / f"{self._next():03d}-{label}.db"
        Journal(path).close()  # create the file and its table before any worker opens it
        return str(path)

    # -- workers ------------------------------------------------------------------------------

    def start_worker(
        self,
        impl: Implementation,
        name: str,
        journal: str,
        *,
        prefetch: int = 1,
        slowdown: float = 1.0,
        dot_seconds: float = 0.0,
    ) -> Worker:
        """Start one worker of ``impl`` as its own process group (does not wait for it)."""
        spec = WorkerSpec(
            name=name,
            prefetch=prefetch,
            slowdown=slowdown,
            journal=journal,
            amqp_url=self.amqp_url,
            dot_seconds=dot_seconds,
        )
        log = self.workdir / "logs" / f"{self._next():03d}-{impl.name}-{name}.log"
        spawned_at = time.time()
        worker = Worker(name, GroupProcess(impl.worker_command(spec), log_path=log), spawned_at,
                        impl, spec)  # fmt: skip
        self.workers.append(worker)
        return worker

    def wait_consuming(
        self, impl: Implementation, workers: list[Worker], timeout: float = 60.0
    ) -> None:
        """Wait until ``impl.task_queue()`` shows at least ``len(workers)`` consumers.

        This is the lab's definition of a worker being ready: the broker's management API lists
        its consumer (RabbitMQ docs, "Consumers": ``consumers`` of a queue).

        Raises:
            ScenarioFailed: a worker exited, or the consumers did not appear in time.
        """
        queue = impl.task_queue()

        def ready() -> bool:
            for w in workers:
                if not w.process.alive():
                    raise ScenarioFailed(f"worker {w.name} exited during start-up: {w.log_tail()}")
            stats = self.broker.management.queue(queue)
            return stats is not None and stats.consumers >= len(workers)

        try:
            wait_until(ready, timeout, interval=0.1, what=f"{len(workers)} consumer(s) on {queue}")
        except TimeoutError as e:
            raise ScenarioFailed(str(e)) from None

    def stop(self, worker: Worker) -> None:
        """SIGKILL ``worker``'s process group (the lab never needs its graceful shutdown)."""
        worker.process.kill()
        if worker in self.workers:
            self.workers.remove(worker)

    def stop_all(self) -> None:
        """Kill every worker this lab started and has not stopped yet."""
        for worker in list(self.workers):
            self.stop(worker)

    @contextlib.contextmanager
    def workers_scope(self) -> Iterator[None]:
        """Kill every worker started inside the block when it ends, however it ends."""
        try:
            yield
        finally:
            self.stop_all()

    # -- waiting on the journal ---------------------------------------------------------------

    def wait_finished(
        self,
        journal: str,
        count: int,
        timeout: float,
        *,
        workers: list[Worker] | None = None,
        interval: float = 0.1,
    ) -> list[Execution]:
        """Poll ``journal`` until ``count`` distinct message_ids have finished; return its rows.

        Polls :meth:`shared.journal.Journal.finished_count` (one aggregate query) so the wait
        costs the workers being measured almost no CPU; the rows are read once, at the end.

        Raises:
            ScenarioFailed: the deadline passed, or every one of ``workers`` exited (the message
                gives how many finished and the last log lines).
        """
        with contextlib.closing(Journal(journal)) as j:
            finished = 0

            def done() -> bool:
                nonlocal finished
                finished = j.finished_count()
                if finished >= count:
                    return True
                if workers and not any(w.process.alive() for w in workers):
                    raise ScenarioFailed(
                        f"every worker exited with {finished}/{count} tasks finished: "
                        f"{workers[-1].log_tail()}"
                    )
                return False

            try:
                wait_until(done, timeout, interval=interval, what=f"{count} finished tasks")
            except TimeoutError:
                raise ScenarioFailed(
                    f"only {finished}/{count} tasks finished within {timeout:.0f} s"
                ) from None
            return j.executions()


@dataclass
class Outcome:
    """What one scenario run for one implementation measured.

    Attributes:
        metrics: named figures (units in the name: ``_per_s``, ``_ms``, ``_s``, ``_mb``,
            ``_pct``); ``None`` where the figure does not exist (a worker that never resumed).
        samples: the raw samples the metrics were computed from (written to results.json).
        notes: short remarks for the report (a worker that did not resume, and why).
    """

    metrics: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
