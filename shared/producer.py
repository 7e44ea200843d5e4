"""What the three ``Producer`` classes share: the ``with`` block, the ``connection.blocked``
state, and publishing a batch whose error says how many were confirmed.

RabbitMQ tells a client with ``connection.blocked`` (and a reason such as "low on memory")
that it stops reading from publishing connections while a resource alarm lasts, and with
``connection.unblocked`` that it reads again (RabbitMQ docs, "Blocked Connection
Notifications"). Each implementation registers its client's callbacks to
:meth:`BaseProducer._on_blocked` and :meth:`BaseProducer._on_unblocked`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Generic, Self, TypeVar

from shared.errors import MqlabError, PublishUnconfirmed, blocked, unconfirmed
from shared.settings import Settings

Sent = TypeVar("Sent")
"""What one confirmed publish returns (an envelope, or Dramatiq's message)."""


class BaseProducer(ABC, Generic[Sent]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``. Each
    :meth:`publish` returns only for a message the broker confirmed (publisher confirms),
    reconnecting after an idle period or a broker restart, and raises
    :class:`~shared.errors.MqlabError` otherwise (``PublisherBlocked`` after
    ``MQLAB_BLOCKED_TIMEOUT`` under a resource alarm).

    Subclasses (each implementation's ``new_task.Producer``) set :attr:`settings` and
    implement :meth:`publish`, :meth:`close` and :meth:`_drop`.

    Attributes:
        settings: the loaded settings (``MQLAB_BLOCKED_TIMEOUT``, ``MQLAB_CONFIRM_TIMEOUT``).
    """

    settings: Settings
    _blocked: str | None = None
    """The broker's reason while it blocks this connection, else ``None``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def confirm_timeout(self) -> float:
        """Seconds a publish waits for its confirm (``MQLAB_CONFIRM_TIMEOUT``)."""
        return self.settings.confirm_timeout

    @abstractmethod
    def publish(self, body: str) -> Sent:
        """Publish one message; return once the broker confirmed it.

        Raises:
            shared.errors.MqlabError: the message was not confirmed (the subclass says why).
        """
        ...

    @abstractmethod
    def close(self) -> None:
        """Close the connection (waiting at most ``MQLAB_BLOCKED_TIMEOUT`` seconds).

        Raises:
            PublisherBlocked: the broker still blocked the connection.
        """
        ...

    @abstractmethod
    def _drop(self) -> None:
        """Forget the connection without waiting on it."""
        ...

    def _on_blocked(self, reason: str = "") -> None:
        self._blocked = reason

    def _on_unblocked(self) -> None:
        self._blocked = None

    def _wait_unblocked(self, pump: Callable[[], None]) -> None:
        """Call ``pump`` (which reads from the connection) while the broker blocks it, at
        most ``MQLAB_BLOCKED_TIMEOUT`` seconds.

        Raises:
            PublisherBlocked: still blocked after that (nothing was sent).
        """
        deadline = time.monotonic() + self.settings.blocked_timeout
        while self._blocked is not None:
            if time.monotonic() > deadline:
                reason = self._blocked
                self._drop()
                raise blocked(reason, self.settings.blocked_timeout, sent=False)
            pump()

    def publish_all(self, bodies: Sequence[str]) -> list[Sent]:
        """Publish one message per body, each confirmed before the next; return what
        :meth:`publish` returned.

        Raises:
            shared.errors.MqlabError: as :meth:`publish`; after the first message, the error
                (an unconfirmed publish, a lost connection, a nack) says how many messages
                were confirmed before.
        """
        sent: list[Sent] = []
        for body in bodies:
            try:
                sent.append(self.publish(body))
            except PublishUnconfirmed as e:
                # A quorum queue without a majority: the message may yet be stored, but is
                # not counted as sent.
                raise unconfirmed(self.confirm_timeout, len(sent), len(bodies)) from e
            except MqlabError as e:  # lost connection, nack (a quorum queue's leader lost)...
                if not sent:
                    raise
                raise type(e)(
                    f"{e} ({len(sent)} of {len(bodies)} messages were confirmed before)"
                ) from e
        return sent
