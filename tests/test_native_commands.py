"""Every documented way to start a worker passes the suite: the native commands the README
offers beside the wrappers, held to the conformance suite's delivery, crash, poison and
delivery-limit cases.

* Celery: ``celery -A celery_impl worker -Q celery.task_queue -c 1 --pool prefork -n w1@%h
  --loglevel INFO --without-gossip --without-mingle --without-heartbeat`` (README, "Celery").
* Dramatiq: ``dramatiq dramatiq_impl.actors -p 1 -t 1 -Q dramatiq.task_queue`` and the same
  without ``-Q`` (README, "Dramatiq").

The cases are the suite's own test functions, collected here a second time with
``Implementation.worker_command`` swapped for the native command (:func:`_native`); the
conftest deletes every queue before each test and the test's producers here declare none
(``declare=False``), so the native command alone must declare the work queue and its
dead-letter queue. The wrapper's options travel as the native commands
read them: the environment (``MQLAB_PREFETCH``, ``MQLAB_SLOWDOWN``, ``MQLAB_WORKER_NAME``,
``MQLAB_JOURNAL``; Dramatiq's ``dramatiq_queue_prefetch``). Negative control: before
``celery_impl.broker.WorkQueue`` the Celery native command printed that it parked a poison
message while RabbitMQ dropped it (no ``celery.task_queue.dead``), and
``test_every_processing_fault_parks_the_message`` failed here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from shared.impl import Command, Implementation, WorkerSpec
from tests.helpers import IMPLEMENTATIONS
from tests.test_conformance_delivery import test_delivery, test_redelivery_after_worker_crash
from tests.test_poison import test_delivery_limit_dead_letters_a_poison_message, typed
from tests.test_poison import test_every_processing_fault_parks_the_message as test_poison

__all__ = [
    "test_delivery",
    "test_delivery_limit_dead_letters_a_poison_message",
    "test_poison",
    "test_redelivery_after_worker_crash",
    "typed",
]


def celery_native(spec: WorkerSpec, queue: str) -> list[str]:
    """README: the native Celery command, every option the wrapper passes."""
    return [
        sys.executable, "-m", "celery", "-A", "celery_impl", "worker",
        "-Q", queue, "-c", str(spec.concurrency), "--pool", "prefork",
        "-n", f"{spec.name}@%h", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def dramatiq_native(spec: WorkerSpec, queue: str) -> list[str]:
    """README: ``dramatiq dramatiq_impl.actors -p 1 -t 1 -Q dramatiq.task_queue``."""
    return [
        sys.executable, "-m", "dramatiq", "dramatiq_impl.actors",
        "-p", "1", "-t", str(spec.concurrency), "-Q", queue,
    ]  # fmt: skip


def dramatiq_all_queues(spec: WorkerSpec, queue: str) -> list[str]:
    """README: ``dramatiq dramatiq_impl.actors -p 1 -t 1`` ("also fine by hand")."""
    return dramatiq_native(spec, queue)[:-2]


NATIVE: dict[str, Callable[[WorkerSpec, str], list[str]]] = {
    "celery": celery_native,
    "dramatiq": dramatiq_native,
    "dramatiq-all-queues": dramatiq_all_queues,
}
"""Each documented native command, by the name its tests carry."""


@pytest.fixture(
    params=[pytest.param((name.split("-")[0], "classic", name), id=name) for name in NATIVE]
)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Celery and Dramatiq on the single node (the delivery-limit case declares its quorum
    queue there), once per native command: the parameter is (implementation, topology,
    native command)."""
    return IMPLEMENTATIONS[request.param[0]]


@pytest.fixture
def native(request: pytest.FixtureRequest) -> str:
    """The native command of this test (a key of :data:`NATIVE`)."""
    return str(request.node.callspec.params["impl"][2])


@pytest.fixture(autouse=True)
def _native(impl: Implementation, native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every worker of the test with the native command instead of the wrapper."""

    def worker_command(spec: WorkerSpec) -> Command:
        env = {**spec.environment(), "dramatiq_queue_prefetch": str(spec.prefetch or 65535)}
        return Command(NATIVE[native](spec, impl.task_queue()), env)

    monkeypatch.setattr(impl, "worker_command", worker_command)
    # The test's producers declare nothing: the queues (the dead-letter queue above all) are
    # there only if the native worker declared them.
    producer = impl.producer
    monkeypatch.setattr(
        impl,
        "producer",
        lambda *, amqp_url=None, queue=None, declare=True: producer(
            amqp_url=amqp_url, queue=queue, declare=False
        ),
    )
