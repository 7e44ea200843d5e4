"""The producer every implementation subclasses: the ``with`` block, the ``connection.blocked``
state, and the one confirm / retry / classify-the-failure loop of :meth:`BaseProducer.publish`.

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
from enum import Enum
from types import TracebackType
from typing import Generic, Self, TypeVar

from shared import settings as mqlab_settings
from shared.errors import (
    MqlabError,
    PublishRefused,
    PublishUnconfirmed,
    blocked,
    lost_twice,
    unconfirmed,
)
from shared.settings import Settings

Sent = TypeVar("Sent")
"""What one confirmed publish returns (an envelope, or Dramatiq's message)."""


class Failure(Enum):
    """How a client error raised out of a publish ends it (:meth:`BaseProducer._classify`)."""

    LOST = "lost"
    """The connection died (its node killed, a broker restart, missed heartbeats): publish
    again on a new one, same message_id (at-least-once), within ``MQLAB_FAILOVER_TIMEOUT``
    (once with 0); then ``BrokerUnreachable``."""
    BLOCKED = "blocked"
    """A resource alarm outlasted the wait: ``PublisherBlocked``, the message not confirmed."""
    UNCONFIRMED = "unconfirmed"
    """No confirm in time (a quorum queue electing a leader, or without a majority): publish
    again on a new connection within ``MQLAB_FAILOVER_TIMEOUT`` (the first copy may yet be
    stored: a duplicate); then ``PublishUnconfirmed``."""


class BaseProducer(ABC, Generic[Sent]):
    """A producer to keep open: ``with Producer() as p: p.publish("task...")``. Each
    :meth:`publish` returns only for a message the broker confirmed (publisher confirms),
    reconnecting after an idle period or a broker restart, riding through the loss of its node
    (:meth:`publish`), and raises
    :class:`~shared.errors.MqlabError` otherwise (``PublisherBlocked`` after
    ``MQLAB_BLOCKED_TIMEOUT`` under a resource alarm).

    **The hook contract.** A subclass (each implementation's ``<package>.producer.Producer``)
    calls ``super().__init__`` and implements these, all plain (blocking) methods; an asyncio
    client implements each by running its coroutine to completion on the producer's own event
    loop (``loop.run_until_complete``), so :meth:`publish` stays one blocking call:

    * :meth:`_message` builds the message for a body (its message_id stays across a retry);
    * :meth:`_ready` makes sure a live connection (and, if asked, the declared queue) is
      there: it reads what arrived meanwhile, so a connection that died while idle is
      replaced before it is written into, and registers ``_on_blocked``/``_on_unblocked``;
    * :meth:`_publish_one` publishes the message ``mandatory`` and returns once the broker
      confirmed it (at most :attr:`confirm_timeout` seconds); a return or a nack it raises as
      :class:`~shared.errors.Unroutable` / :class:`~shared.errors.PublishRefused`;
    * :meth:`_classify` says what a client error out of the two above means: a
      :class:`Failure`, an :class:`~shared.errors.MqlabError` to raise (a translated
      refusal), or ``None`` (not the producer's to explain: raised as it is);
    * :meth:`_drop` forgets the connection (closing it without waiting), :meth:`_forget`
      forgets it without the close handshake (after a confirm timeout: RabbitMQ would answer
      ``channel.close`` only once the queue settles the publish), :meth:`close` closes it.

    An :class:`~shared.errors.MqlabError` raised by a hook passes through unchanged.

    Parameters:
        amqp_url: broker URI, or several nodes' URIs joined by ``;`` (each connection goes to
            the first that answers); default ``AMQP_URL``.
        queue: the target queue (each subclass defaults it to its work queue).
        declare: declare the queue on every (re)connection (as the tutorial does); without it
            a missing queue is :class:`~shared.errors.Unroutable`.
        durable: declare the queue durable and publish persistent messages (tutorial 2);
            ``False`` for tutorial 1's plain queue and transient messages (where the
            implementation has a tutorial 1 producer: Dramatiq's queues are always durable).

    Attributes:
        settings: the loaded settings (``MQLAB_BLOCKED_TIMEOUT``, ``MQLAB_CONFIRM_TIMEOUT``).
    """

    settings: Settings
    republished: int = 0
    """How many times a message was published again after a failure (a lost connection, an
    unconfirmed or nacked publish): each may be stored twice, so at most this many
    duplicates."""
    _blocked: str | None = None
    """The broker's reason while it blocks this connection, else ``None``."""

    def __init__(
        self, amqp_url: str | None, *, queue: str, declare: bool, durable: bool = True
    ) -> None:
        self.settings = mqlab_settings.load()
        self.amqp_url = amqp_url
        self.queue = queue
        self.declare = declare
        self.durable = durable

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

    @property
    def blocked_wait(self) -> float:
        """Seconds a publish waits out a resource alarm (``MQLAB_BLOCKED_TIMEOUT``)."""
        return self.settings.blocked_timeout

    @property
    def failover_wait(self) -> float:
        """Seconds after a message's first failed publish during which it is published again
        (``MQLAB_FAILOVER_TIMEOUT``; 0: once more after a lost connection only)."""
        return self.settings.failover_timeout

    def publish(self, body: str) -> Sent:
        """Publish one message; return it once the broker confirmed it.

        **Riding through a node loss.** When the connection is lost (its node was killed, a
        partition) or the publish stays unconfirmed or is nacked (a quorum queue electing a
        new leader), the same message (same message_id) is published again on a new
        connection, to the first node of ``AMQP_URL`` that answers, for
        :attr:`failover_wait` seconds after the first failure. RabbitMQ docs, "Quorum
        Queues": a queue keeps confirming while a majority of its nodes is up; so only a lost
        majority (no node answers, or no confirm past the wait) stops the producer. A message
        whose first publish was stored but not confirmed is then stored twice: each
        republish is counted in :attr:`republished`, and the consumer sees the same
        message_id again (at-least-once).

        Raises:
            shared.errors.MqlabError: unreachable broker, refused credentials or permissions,
                406 on declare, unroutable, blocked publish; nacked, unconfirmed or lost
                connection still after :attr:`failover_wait` seconds.
        """
        message = self._message(body)
        first_failure: float | None = None
        tries = 0
        while True:
            tries += 1
            try:
                self._ready()
                self._publish_one(message, body)
                return message
            except PublishRefused as e:  # a nack: the queue lost its leader, say
                first_failure = first_failure or time.monotonic()
                if not self._rides_through(first_failure):
                    raise
                failure: Failure | MqlabError | None = e
            except MqlabError:
                raise
            except Exception as e:
                failure = self._classify(e)
                if failure is None:
                    raise
                if isinstance(failure, MqlabError):
                    self._drop()
                    raise failure from e
                if failure is Failure.BLOCKED:
                    reason = self._blocked or ""
                    self._drop()
                    raise blocked(reason, self.blocked_wait, sent=True) from e
                first_failure = first_failure or time.monotonic()
                rides = self._rides_through(first_failure)
                if failure is Failure.UNCONFIRMED:
                    self._forget()
                    if not rides:
                        retried = self.failover_wait if tries > 1 else 0.0
                        raise unconfirmed(self.confirm_timeout, 0, 1, retried) from e
                else:  # Failure.LOST: on a new connection
                    self._drop()
                    if not rides and (tries > 1 or self.failover_wait > 0):
                        raise lost_twice(self._cause(e), tries, self.failover_wait) from e
            self.republished += 1
            # No pause for the first retry (a new connection to a live node); then a short
            # one, so a cluster electing a leader is not flooded.
            time.sleep(min(0.2 * (tries - 1), 1.0))

    def _rides_through(self, first_failure: float) -> bool:
        """Whether a failed publish is published again: within :attr:`failover_wait` seconds
        of its first failure."""
        return time.monotonic() - first_failure < self.failover_wait

    @abstractmethod
    def _message(self, body: str) -> Sent:
        """The message to publish for ``body`` (a new message_id)."""

    @abstractmethod
    def _ready(self) -> None:
        """A live connection, not blocked, the queue declared (see the hook contract).

        Raises:
            shared.errors.MqlabError: unreachable broker, refused login or permissions, 406.
        """

    @abstractmethod
    def _publish_one(self, message: Sent, body: str) -> None:
        """Publish ``message`` (whose text is ``body``); return once the broker confirmed it.

        Raises:
            shared.errors.Unroutable: the broker returned it (no queue).
            shared.errors.PublishRefused: the broker nacked it.
            Exception: the client's own errors, for :meth:`_classify`.
        """

    @abstractmethod
    def _classify(self, error: Exception) -> Failure | MqlabError | None:
        """What ``error`` (raised by :meth:`_ready` or :meth:`_publish_one`) means."""

    def _cause(self, error: Exception) -> str:
        """The reason of a lost connection, for the error message."""
        return str(error) or type(error).__name__

    @abstractmethod
    def close(self) -> None:
        """Close the connection (waiting at most ``MQLAB_BLOCKED_TIMEOUT`` seconds).

        Raises:
            PublisherBlocked: the broker still blocked the connection.
        """

    @abstractmethod
    def _drop(self) -> None:
        """Forget the connection without waiting on it."""

    def _forget(self) -> None:
        """Forget the connection without the close handshake (default: :meth:`_drop`)."""
        self._drop()

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
                raise unconfirmed(
                    self.confirm_timeout, len(sent), len(bodies), e.retried_for
                ) from e
            except MqlabError as e:  # lost connection, nack (a quorum queue's leader lost)...
                if not sent:
                    raise
                # With MQLAB_CONFIRMS=0 nothing is confirmed: a publish returned once written.
                done = "confirmed" if self.settings.confirms else "written (not confirmed)"
                raise type(e)(
                    f"{e} ({len(sent)} of {len(bodies)} messages were {done} before)"
                ) from e
        return sent
