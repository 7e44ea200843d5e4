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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shared.journal import Execution


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
