"""What the lab measures: an implementation with mqlab's hardened settings, or a variant of it.

A *variant* is a row of its own beside the implementation:

- ``<impl>-defaults`` (Celery, Dramatiq, FastStream): the framework's own defaults instead of
  the hardened settings mqlab uses. Celery: ``task_acks_late=False`` (ack on receipt),
  ``worker_prefetch_multiplier=4`` (prefetch 4 at concurrency 1) and no publisher confirms
  (py-amqp ``confirm_publish=False``); Celery docs, "Configuration and defaults". Dramatiq:
  ``dramatiq_queue_prefetch`` unset (2 x threads = 2) and ``confirm_delivery=False``;
  Dramatiq docs, "RabbitmqBroker". FastStream: ``Channel()`` without ``prefetch_count`` (no
  ``basic.qos``: unlimited) and ``graceful_timeout=15``. What the guarantees cost in tasks/s
  and what the defaults lose when a worker or the broker is killed is then measured, not
  argued.
- ``celery-threads``: Celery's ``threads`` pool instead of prefork (measured by the scenarios
  that name the ``threads`` variant, :attr:`lab.scenario.Scenario.variants`).

Adding a row is one entry: an implementation's look in :data:`IMPLEMENTATIONS` (it is measured
once :mod:`testbed.registry` knows it), a variant's settings in :data:`VARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.impl import Implementation


@dataclass(frozen=True)
class Target:
    """One row of the lab: an implementation and the settings it runs with.

    Attributes:
        name: the row id (``pika``, ``celery-defaults``).
        impl: the implementation.
        early_ack: acknowledge on receipt (:attr:`shared.impl.WorkerSpec.early_ack`).
        prefetch: a fixed prefetch that overrides the scenario's, or ``None``.
        producer_env: environment for the producer (published from a separate process,
            :mod:`lab.run.publisher`, when not empty).
        worker_env: further environment for the workers.
        worker_args: further worker command-line arguments (``--pool threads``).
        settings: the settings in words, for the report.
    """

    name: str
    impl: Implementation
    early_ack: bool = False
    prefetch: int | None = None
    producer_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()
    settings: str = "mqlab's hardened settings"

    def queue(self) -> str:
        """The implementation's work queue."""
        return self.impl.task_queue()


@dataclass(frozen=True)
class Look:
    """How an implementation's rows look in the report, and what it is built on.

    Attributes:
        colour: its colour in every chart (its variants keep it, with a hatch).
        libraries: the distributions whose versions the report lists for it.
    """

    colour: str
    libraries: tuple[str, ...]


IMPLEMENTATIONS: dict[str, Look] = {
    "pika": Look("#1f77b4", ("pika",)),
    "celery": Look("#2ca02c", ("celery", "kombu")),
    "dramatiq": Look("#d62728", ("dramatiq",)),
    "faststream": Look("#ff7f0e", ("faststream", "aio-pika")),
}
"""Implementation id (:data:`testbed.registry.KNOWN`) -> its look: one entry per implementation
row. An implementation without an entry is still measured, drawn in :data:`OTHER_COLOUR`."""
OTHER_COLOUR = "#9467bd"

NO_CONFIRMS = {"MQLAB_CONFIRMS": "0"}

VARIANTS: dict[str, dict[str, object]] = {
    "celery-defaults": {
        "early_ack": True,
        "prefetch": 4,
        "producer_env": NO_CONFIRMS,
        "settings": "Celery defaults: ack on receipt (task_acks_late=False), "
        "worker_prefetch_multiplier=4, no publisher confirms",
    },
    "dramatiq-defaults": {
        "prefetch": 2,
        "producer_env": NO_CONFIRMS,
        "settings": "Dramatiq defaults: prefetch 2 x threads (dramatiq_queue_prefetch "
        "unset), no publisher confirms (confirm_delivery=False)",
    },
    "faststream-defaults": {
        "prefetch": 0,
        "worker_args": ("--graceful-timeout", "15"),
        "settings": "FastStream defaults: no basic.qos (Channel(prefetch_count=None), "
        "unlimited), graceful_timeout=15 s; its defaults already confirm publishes "
        "(publisher_confirms=True) and ack after the handler (AckPolicy.REJECT_ON_ERROR)",
    },
    "celery-threads": {
        "worker_args": ("--pool", "threads"),
        "settings": "Celery threads pool (--pool threads -c N)",
    },
}
"""Variant row (``<implementation>-<variant>``) -> its :class:`Target` fields: one entry per
row. A scenario measures the variants it names (:attr:`lab.scenario.Scenario.variants`)."""


def plain(impl: Implementation) -> Target:
    """``impl`` with mqlab's hardened settings."""
    return Target(impl.name, impl)


def variant(impl: Implementation, name: str) -> Target | None:
    """``impl``'s variant ``name``, or ``None`` where it has none."""
    fields = VARIANTS.get(f"{impl.name}-{name}")
    if fields is None:
        return None
    return Target(f"{impl.name}-{name}", impl, **fields)  # type: ignore[arg-type]


def targets(impls: list[Implementation], variants: tuple[str, ...]) -> list[Target]:
    """Each implementation, followed by its variants among ``variants``."""
    out: list[Target] = []
    for impl in impls:
        out.append(plain(impl))
        out += [t for v in variants if (t := variant(impl, v)) is not None]
    return out


def colour(row: str) -> str:
    """The chart colour of ``row``'s implementation (``celery-defaults``: Celery's)."""
    look = IMPLEMENTATIONS.get(row.split("-", 1)[0])
    return look.colour if look else OTHER_COLOUR


def libraries() -> tuple[str, ...]:
    """Every implementation's libraries, in table order."""
    return tuple(lib for look in IMPLEMENTATIONS.values() for lib in look.libraries)
