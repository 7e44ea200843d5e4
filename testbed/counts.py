"""Counting messages the way Jepsen does (rabbitmq/jepsen, "Jepsen: RabbitMQ"): what was
attempted, what the broker confirmed, and what workers executed, set against each other.

* **attempted** — publishes started;
* **confirmed** — those the broker confirmed (publisher confirms);
* **unconfirmed** — attempted and not confirmed: the producer reported them unsent (the
  broker may still have stored them);
* **lost** — confirmed and never executed: the one count that must be 0;
* **duplicated** — executed more than once (a redelivery after a lost ack);
* **unexpected** — executed but never attempted (must be 0);
* **recovered** — unconfirmed but executed all the same (the confirm was lost, not the message);
* **queue empty** — the work queue held no message after the final drain.

The producer does not hand back the ``message_id`` of a publish that failed, so an execution is
matched to an unconfirmed attempt by its ``published_at`` (the ``x-mqlab-published-at`` header,
set when the producer builds the message): it falls inside that attempt's time window.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shared.errors import MqlabError
from shared.impl import Implementation
from shared.journal import Execution
from testbed.process import wait_until


@dataclass(frozen=True)
class Attempt:
    """One publish, as its producer saw it.

    Attributes:
        began: when the publish call began, epoch seconds.
        ended: when it returned or raised, epoch seconds.
        message_id: the confirmed message's id, or ``None`` if it was not confirmed.
    """

    began: float
    ended: float
    message_id: str | None = None


@dataclass(frozen=True)
class Counts:
    """The counts of one run (module docstring); ids, not only numbers, for the assertions."""

    attempted: int
    confirmed: frozenset[str]
    unconfirmed: int
    lost: frozenset[str]
    duplicated: dict[str, int]
    """message_id -> executions, for those executed more than once."""
    unexpected: frozenset[str]
    recovered: frozenset[str]
    queue_empty: bool

    @property
    def extra_runs(self) -> int:
        """Executions beyond the first, over every duplicated message."""
        return sum(self.duplicated.values()) - len(self.duplicated)

    def as_dict(self) -> dict[str, int | bool]:
        """The numbers, for a report."""
        return {
            "attempted": self.attempted,
            "confirmed": len(self.confirmed),
            "unconfirmed": self.unconfirmed,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
            "recovered": len(self.recovered),
            "queue_empty": self.queue_empty,
        }

    def line(self) -> str:
        """One line for people: ``attempted 120, confirmed 115, ... queue empty yes``."""
        parts = [
            f"{k.replace('_', ' ')} {('yes' if v else 'no') if isinstance(v, bool) else v}"
            for k, v in self.as_dict().items()
        ]
        return ", ".join(parts)


def count(
    attempts: Iterable[Attempt], executions: Iterable[Execution], queue_empty: bool
) -> Counts:
    """Set the attempts of a run against the journal's executions.

    Parameters:
        attempts: every publish attempted in the run.
        executions: the journal rows of the run (every row counts as one execution).
        queue_empty: whether the work queue was empty after the final drain.
    """
    attempts = list(attempts)
    rows = list(executions)
    confirmed = frozenset(a.message_id for a in attempts if a.message_id is not None)
    windows = [(a.began, a.ended) for a in attempts if a.message_id is None]
    runs = Counter(r.message_id for r in rows)
    finished = {r.message_id for r in rows if r.finished}
    published_at = {r.message_id: r.published_at for r in rows}
    extras = set(runs) - confirmed
    recovered = frozenset(m for m in extras if any(b <= published_at[m] <= e for b, e in windows))
    return Counts(
        attempted=len(attempts),
        confirmed=confirmed,
        unconfirmed=len(windows),
        lost=frozenset(confirmed - finished),
        duplicated={m: n for m, n in runs.items() if n > 1},
        unexpected=frozenset(extras - recovered),
        recovered=recovered,
        queue_empty=queue_empty,
    )


def confirmed_between(
    attempts: Iterable[Attempt], since: float, until: float = float("inf")
) -> int:
    """Attempts confirmed that ended after ``since`` and no later than ``until`` (epoch
    seconds)."""
    return sum(1 for a in attempts if a.message_id and since < a.ended <= until)


class CountingProducer(threading.Thread):
    """Publishes one work message (``partition N.``) at a time through the implementation's
    producer (kept open; reopened after an error), pausing ``pause`` seconds between publishes,
    until :attr:`stop` is set; records every attempt (:class:`Attempt`): a publish that raised
    is unconfirmed, not lost.

    Parameters:
        impl: the implementation whose producer publishes.
        amqp_url: its ``AMQP_URL`` (every node, ``;``-joined, the one to use first first).
        attempts: attempts made before (a publish that declared the queue).
        pause: seconds between publishes.
    """

    def __init__(
        self, impl: Implementation, amqp_url: str, attempts: list[Attempt], pause: float = 0.1
    ) -> None:
        super().__init__(daemon=True)
        self.impl, self.amqp_url, self.pause = impl, amqp_url, pause
        self.attempts = list(attempts)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.crashed = ""
        self.republished = 0
        """Messages the producers republished (same ``message_id``) after a lost connection, a
        missing confirm or a nack (:attr:`shared.producer.BaseProducer.republished`): each may be
        stored twice, the second copy not flagged redelivered."""

    def run(self) -> None:
        try:
            self._publish_until_stopped()
        except BaseException:
            self.crashed = traceback.format_exc()
            raise

    def _publish_until_stopped(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with self.impl.producer(amqp_url=self.amqp_url) as producer:
                    try:
                        while not self.stop.is_set():
                            n += 1
                            began = time.time()
                            try:
                                message_id = producer.publish(f"partition {n}.").message_id
                            except MqlabError:
                                self.attempts.append(Attempt(began, time.time()))
                                raise
                            self.attempts.append(Attempt(began, time.time(), message_id))
                            time.sleep(self.pause)
                    finally:
                        self.republished += producer.republished
            except MqlabError as e:  # reported unsent; open a new producer after a pause
                self.errors.append(str(e))
                time.sleep(0.5)

    def confirmed_after(self, moment: float) -> int:
        """Publishes confirmed that ended after ``moment`` (epoch seconds)."""
        return confirmed_between(self.attempts, moment)

    def wait_confirmed_after(self, moment: float, count: int, timeout: float, what: str) -> None:
        """Wait until ``count`` publishes that ended after ``moment`` were confirmed.

        Raises:
            AssertionError: not in time, or the producer raised what no user should see.
        """
        try:
            wait_until(
                lambda: self.confirmed_after(moment) >= count or bool(self.crashed),
                timeout,
                what=what,
            )
        except TimeoutError as e:
            raise AssertionError(f"{e}; producer errors: {self.errors[-3:]}") from None
        assert not self.crashed, self.crashed
