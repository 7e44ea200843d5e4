"""The narrow interface the tests and the lab use to drive every implementation.

An implementation (``raw_pika``, ``celery_impl``, ``dramatiq_impl``) exposes one
:class:`Implementation` object as ``<package>.impl.IMPLEMENTATION``. Through it a caller can
publish work messages with the implementation's own producer code, and get the command that
starts one of its workers as a separate OS process. Nothing else about the framework leaks out:
tests observe the outcome through the journal and the broker's management API.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import queues
from shared.producer import BaseProducer


@dataclass(frozen=True)
class Command:
    """A program to run: ``argv`` plus the environment variables to add to ours.

    Attributes:
        argv: the program and its arguments.
        env: variables set on top of the parent's environment.
    """

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker process.

    Attributes:
        name: worker name written into the journal (``MQLAB_WORKER_NAME``).
        prefetch: messages the worker may hold unacknowledged per slot; ``0`` means unlimited.
        slowdown: factor applied to every task's work time (``4.0`` = four times slower).
        journal: path of the execution journal, or ``None``.
        amqp_url: broker URL, or ``None`` for ``AMQP_URL`` / the default.
        dot_seconds: seconds per ``.`` of work, or ``None`` for ``MQLAB_DOT_SECONDS``.
        early_ack: acknowledge on receipt instead of after the work (a negative control that
            loses the message in hand on a crash); only where
            :attr:`Implementation.early_ack_flag` is set.
        env: further environment variables.
        concurrency: task slots (threads or processes, as the framework runs them); each slot
            may hold ``prefetch`` messages (``MQLAB_CONCURRENCY``); the worker's ``basic.qos``
            prefetch count is ``prefetch x concurrency``.
    """

    name: str
    prefetch: int = 1
    slowdown: float = 1.0
    journal: str | None = None
    amqp_url: str | None = None
    dot_seconds: float | None = None
    early_ack: bool = False
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1

    def environment(self) -> dict[str, str]:
        """The environment variables that carry this spec to the worker process."""
        env = {
            "MQLAB_WORKER_NAME": self.name,
            "MQLAB_PREFETCH": str(self.prefetch),
            "MQLAB_SLOWDOWN": str(self.slowdown),
            "MQLAB_CONCURRENCY": str(self.concurrency),
        }
        if self.journal:
            env["MQLAB_JOURNAL"] = self.journal
        if self.amqp_url:
            env["AMQP_URL"] = self.amqp_url
        if self.dot_seconds is not None:
            env["MQLAB_DOT_SECONDS"] = str(self.dot_seconds)
        return {**env, **self.env}


class Implementation(ABC):
    """One way of building the tutorial system. Subclasses live in each implementation package.

    Attributes:
        name: the id used in test ids and reports (``"pika"``, ``"celery"``, ``"dramatiq"``).
        package: the Python package (``"raw_pika"``).
        early_ack_flag: the worker option that acknowledges on receipt (the negative control
            for crash tests), or ``None`` where the framework has no such mode.
        unlimited_prefetch: the prefetch count actually used for "unlimited" (``0`` where the
            framework supports it, else the largest it accepts).
    """

    name: str
    package: str
    producer_class: Callable[..., BaseProducer[Any]]
    """The implementation's ``<package>.producer.Producer(amqp_url, *, queue, declare)``."""
    early_ack_flag: str | None = None
    unlimited_prefetch: int = 0

    @abstractmethod
    def task_queue(self) -> str:
        """Name of the durable work queue (with ``MQLAB_QUEUE_PREFIX`` applied)."""

    @abstractmethod
    def hello_queue(self) -> str:
        """Name of the hello-world queue."""

    @property
    def supports_early_ack(self) -> bool:
        """Whether :attr:`WorkerSpec.early_ack` is available."""
        return self.early_ack_flag is not None

    def dead_letter_queue(self) -> str:
        """Where the work queue parks what cannot be processed (:mod:`shared.queues`)."""
        return queues.dead_letter_queue(self.task_queue())

    def queues(self) -> list[str]:
        """Every queue this implementation declares (cleared between tests and lab runs)."""
        return [self.hello_queue(), self.task_queue(), self.dead_letter_queue()]

    def producer(
        self, *, amqp_url: str | None = None, queue: str | None = None, declare: bool = True
    ) -> BaseProducer[Any]:
        """The implementation's producer to keep open (:class:`~shared.producer.BaseProducer`:
        ``with impl.producer() as p: p.publish(...)``).

        Parameters:
            amqp_url: broker URI; default ``AMQP_URL``.
            queue: target queue; default :meth:`task_queue`.
            declare: declare the queue on every (re)connection.
        """
        return self.producer_class(amqp_url, queue=queue, declare=declare)

    def publish_work(
        self,
        bodies: Sequence[str],
        *,
        amqp_url: str | None = None,
        queue: str | None = None,
        declare: bool = True,
    ) -> list[str]:
        """Publish one work message per body through the implementation's producer
        (:meth:`producer`, the one its ``new_task`` program uses).

        Messages are persistent, published with ``mandatory`` and confirmed (publisher
        confirms, unless ``MQLAB_CONFIRMS=0``).

        Parameters:
            bodies: message texts (tutorial 2: one unit of work per ``.``).
            amqp_url: broker URI; default ``AMQP_URL``.
            queue: target queue; default :meth:`task_queue`.
            declare: declare the queue before publishing (as the producers normally do);
                ``False`` publishes to ``queue`` as it is, so a missing queue is unroutable.

        Returns:
            The message_ids, in publish order.

        Raises:
            shared.errors.Unroutable: no queue took the message (``basic.return``).
            shared.errors.MqlabError: unreachable broker, refused credentials or permissions,
                nacked or blocked publish.
        """
        with self.producer(amqp_url=amqp_url, queue=queue, declare=declare) as producer:
            return [producer.publish(body).message_id for body in bodies]

    def worker_command(self, spec: WorkerSpec) -> Command:
        """The command that runs one worker process as ``spec`` describes:
        ``python -m <package>.worker --concurrency C --prefetch N --slowdown F --name W
        [early-ack flag]``.

        Raises:
            ValueError: ``spec.early_ack`` where the implementation has no early-ack mode.
        """
        argv = [
            sys.executable, "-m", f"{self.package}.worker",
            "--concurrency", str(spec.concurrency),
            "--prefetch", str(spec.prefetch),
            "--slowdown", str(spec.slowdown),
            "--name", spec.name,
        ]  # fmt: skip
        if spec.early_ack:
            if self.early_ack_flag is None:
                raise ValueError(f"{self.name} has no early-ack mode")
            argv.append(self.early_ack_flag)
        return Command(argv, spec.environment())

    def send_command(self, text: str | None) -> Command:
        """The hello-world producer program (``python -m <package>.send [text]``)."""
        argv = [sys.executable, "-m", f"{self.package}.send"]
        return Command(argv if text is None else [*argv, text])

    def new_task_command(self, bodies: Sequence[str], count: int = 1) -> Command:
        """The work producer program (``python -m <package>.new_task [body...] --count N``)."""
        return Command(
            [sys.executable, "-m", f"{self.package}.new_task", *bodies, "--count", str(count)]
        )

    def receive_command(self) -> Command:
        """The hello-world consumer program (``python -m <package>.receive``); it prints
        `` [x] Received <text>`` per message."""
        return Command([sys.executable, "-m", f"{self.package}.receive"])
