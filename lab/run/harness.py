"""What every scenario shares: the broker, fresh journals, worker processes, clean queues.

A scenario asks the :class:`Lab` for a journal file, starts workers through the implementation
interface (:meth:`shared.impl.Implementation.worker_command`) as process groups
(:class:`testbed.process.GroupProcess`), and reads its figures back from the journal and the
broker's management API. Nothing here knows which framework a worker runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lab.run.config import Config
from lab.run.publisher import Publisher
from lab.run.targets import Target
from lab.scenario import Outcome, ScenarioFailed, ScenarioSkipped
from shared.impl import Command, Implementation, WorkerSpec
from shared.journal import Execution, Journal
from testbed.node import Node
from testbed.process import GroupProcess, wait_until

__all__ = ["Config", "Lab", "Outcome", "ScenarioFailed", "ScenarioSkipped", "Target", "Worker"]

SETTLE_SECONDS = 1.5
"""No task finished for this long and the queue is empty: the rest is lost (see
:meth:`Lab.wait_finished`)."""
BASELINE_QUEUE = "mqlab_lab_baseline"
"""The queue the bare pika baseline publishes to and consumes from."""


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

    def __init__(
        self, broker: Node, workdir: Path, config: Config, setup: str = "classic/single"
    ) -> None:
        self.broker = broker
        self.workdir = workdir
        self.config = config
        self.setup = setup
        self.env: dict[str, str] = {}
        """Environment for every worker and separate producer of this setup (queue type)."""
        self.workers: list[Worker] = []
        self._serial = 0
        (workdir / "journals").mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def amqp_url(self) -> str:
        """The AMQP URI the implementations get: every node's, ``;``-separated, on a cluster
        (the clients fail over), else the broker's."""
        return str(getattr(self.broker, "failover_url", self.broker.amqp_url))

    @property
    def node_url(self) -> str:
        """One node's AMQP URI, for the lab's own pika connections (queue polling, baseline)."""
        return self.broker.amqp_url

    @contextlib.contextmanager
    def environment(self, env: dict[str, str]) -> Iterator[None]:
        """Run the block with ``env`` for every worker, every producer (the lab's own, in this
        process, reads settings at each publish) and every separate process it starts."""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.env = dict(env)
        try:
            yield
        finally:
            self.env = {}
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _next(self) -> str:
        """A unique file-name prefix: the setup and a serial (``quorum-single-007``), so two
        setups sharing one scratch directory never share a journal."""
        self._serial += 1
        return f"{self.setup.replace('/', '-')}-{self._serial:03d}"

    # -- queues and journals ----------------------------------------------------------------

    def reset(self, impls: list[Implementation]) -> None:
        """Delete every queue of every implementation and the baseline queue (with messages)."""
        for impl in impls:
            for queue in impl.queues():
                self.broker.management.delete_queue(queue)
        self.broker.management.delete_queue(BASELINE_QUEUE)

    def journal(self, label: str) -> str:
        """Path of a new, empty journal file for one run labelled ``label``."""
        path = self.workdir / "journals" / f"{self._next()}-{label}.db"
        Journal(path).close()  # create the file and its table before any worker opens it
        return str(path)

    # -- workers ------------------------------------------------------------------------------

    def worker_spec(
        self,
        target: Target,
        name: str,
        journal: str | None,
        *,
        prefetch: int = 1,
        slowdown: float = 1.0,
        dot_seconds: float = 0.0,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ) -> WorkerSpec:
        """How to start one worker of ``target``.

        The target's own settings win over the scenario's: a defaults row keeps its
        framework-default prefetch and early ack. ``journal=None`` records nothing (rate runs).

        ``concurrency`` is the worker's task slots; ``prefetch`` is per slot; ``env`` the
        scenario's further variables (the target's win).
        """
        return WorkerSpec(
            name=name,
            prefetch=target.prefetch if target.prefetch is not None else prefetch,
            slowdown=slowdown,
            journal=journal,
            amqp_url=self.amqp_url,
            dot_seconds=dot_seconds,
            early_ack=target.early_ack,
            env={**self.env, **(env or {}), **target.worker_env},
            concurrency=concurrency,
        )

    def start_worker(
        self,
        target: Target,
        name: str,
        journal: str | None,
        *,
        prefetch: int = 1,
        slowdown: float = 1.0,
        dot_seconds: float = 0.0,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ) -> Worker:
        """Start one worker of ``target`` (:meth:`worker_spec`) as its own process group; does
        not wait for it."""
        spec = self.worker_spec(
            target,
            name,
            journal,
            prefetch=prefetch,
            slowdown=slowdown,
            dot_seconds=dot_seconds,
            concurrency=concurrency,
            env=env,
        )
        log = self.workdir / "logs" / f"{self._next()}-{target.name}-{name}.log"
        spawned_at = time.time()
        command = self.worker_command(target, spec)
        worker = Worker(name, GroupProcess(command, log_path=log), spawned_at, target.impl, spec)
        self.workers.append(worker)
        return worker

    @staticmethod
    def worker_command(target: Target, spec: WorkerSpec) -> Command:
        """``target``'s worker command for ``spec``, with the target's own arguments."""
        command = target.impl.worker_command(spec)
        return Command([*command.argv, *target.worker_args], command.env)

    def publish(self, target: Target, bodies: list[str]) -> list[str]:
        """Publish ``bodies`` through ``target``'s producer; return the message_ids.

        In this process, or through :mod:`lab.run.publisher` when the target's producer needs an
        environment of its own (no publisher confirms).

        Raises:
            ScenarioFailed: the separate producer failed.
        """
        if not target.producer_env:
            return target.impl.publish_work(bodies, amqp_url=self.amqp_url)
        if len(set(bodies)) != 1:
            raise ScenarioFailed("a separate producer publishes copies of one body")
        return list(self.publisher(target, body=bodies[0], count=len(bodies)).result()["ids"])

    def publisher(self, target: Target, **options: object) -> Publisher:
        """Start :mod:`lab.run.publisher` for ``target`` with ``options`` (``count=N`` or ``rate=R,
        seconds=S, chunk=C``); ``.result()`` waits for it."""
        out = self.workdir / "logs" / f"{self._next()}-{target.name}-publisher.json"
        argv = [
            sys.executable,
            "-m",
            "lab.run.publisher",
            "--impl",
            target.impl.name,
            "--amqp-url",
            self.amqp_url,
            "--out",
            str(out),
        ]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        env = {**self.env, **target.producer_env}
        process = GroupProcess(Command(argv, env), log_path=out.with_suffix(".log"))
        return Publisher(process, out, self.config.drain_timeout)

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

    def drained(self, queue: str, since: float) -> bool:
        """Whether ``queue`` holds nothing, ready or unacknowledged, in figures the management
        API collected after ``since`` (epoch seconds): nothing is left for any worker."""
        stats = self.broker.management.queue(queue)
        if stats is None:
            return True
        return stats.sampled_after >= since and stats.ready == 0 and stats.unacked == 0

    def wait_finished(
        self,
        journal: str,
        count: int,
        timeout: float,
        *,
        workers: list[Worker] | None = None,
        interval: float = 0.1,
        settle: str | None = None,
    ) -> list[Execution]:
        """Poll ``journal`` until ``count`` distinct message_ids have finished; return its rows.

        Polls :meth:`shared.journal.Journal.finished_count` (one aggregate query) so the wait
        costs the workers being measured almost no CPU; the rows are read once, at the end.
        With ``settle`` (a queue name) the wait also ends, without an error, once no task has
        finished for :data:`SETTLE_SECONDS` and that queue is empty (:meth:`drained`): the
        messages still missing are lost, and waiting longer would not bring them back.

        Raises:
            ScenarioFailed: the deadline passed, or every one of ``workers`` exited (the message
                gives how many finished and the last log lines).
        """
        with contextlib.closing(Journal(journal)) as j:
            finished, progress_at = -1, time.time()

            def done() -> bool:
                nonlocal finished, progress_at
                now_finished = j.finished_count()
                if now_finished != finished:
                    finished, progress_at = now_finished, time.time()
                if finished >= count:
                    return True
                if settle and time.time() - progress_at > SETTLE_SECONDS:
                    return self.drained(settle, progress_at)
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
