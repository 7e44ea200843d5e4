"""A producer an application keeps open: each publish is confirmed or raises.

Per implementation (``impl.producer()``, the ``producer.Producer`` the programs use):

* idle longer than a short heartbeat timeout, then publish: confirmed, and it arrives;
* broker restart between two publishes: the second is confirmed (and arrives) or raises;
  never a silent loss;
* the broker blocks publishers (a memory alarm): the publish fails within
  ``MQLAB_BLOCKED_TIMEOUT`` with one line naming the alarm; the program exits non-zero.

Each has its negative control: the connection really died before the next publish, the alarm
really was on (and once it is off the same publish succeeds).

The confirm loop every ``Producer`` shares (:class:`shared.producer.BaseProducer`) says in its
one line how many messages were confirmed before a nack, and that an unconfirmed message may
still be stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from shared.errors import (
    BrokerUnreachable,
    MqlabError,
    PublisherBlocked,
    PublishRefused,
    PublishUnconfirmed,
    unconfirmed,
)
from shared.impl import Implementation
from shared.producer import BaseProducer, Failure
from testbed.node import Node
from testbed.process import wait_until
from tests.helpers import run_to_end

HEARTBEAT = 1
"""Seconds: the heartbeat timeout negotiated for the idle test (RabbitMQ closes a connection
that sent nothing for about two of them)."""

BLOCKED_TIMEOUT = 2.0
"""``MQLAB_BLOCKED_TIMEOUT`` in the blocked test, seconds."""


def _ready(broker: Node, queue: str, count: int) -> None:
    broker.management.wait_for_queue(queue, 30, ready=count, fresh_after=time.time())


@pytest.mark.timeout(90)
def test_publish_after_an_idle_period_longer_than_the_heartbeat(
    broker: Node, impl: Implementation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQLAB_HEARTBEAT", str(HEARTBEAT))
    queue = impl.task_queue()
    with impl.producer() as producer:
        producer.publish("before the idle period")
        _ready(broker, queue, 1)
        # Negative control: the broker really dropped the idle connection (missed heartbeats),
        # so the next publish has to notice and reconnect.
        wait_until(
            lambda: not broker.management.connections(),
            30,
            interval=0.2,
            what="the broker to close the idle connection (missed heartbeats)",
        )
        second = producer.publish("after the idle period")
    assert second.message_id
    _ready(broker, queue, 2)


@pytest.mark.destructive
@pytest.mark.timeout(180)
def test_publish_after_a_broker_restart_is_confirmed_or_raises(
    killable_broker: Node, impl: Implementation
) -> None:
    """The broker is SIGKILLed and started again between two publishes of one producer: the
    second publish returns only if its message is in the queue afterwards (found by its
    message_id), else it raises. Whether the first survives is the broker's durability, which
    test_persistence_across_broker_restart checks."""
    broker = killable_broker
    queue = impl.task_queue()
    with impl.producer() as producer:
        producer.publish("before the restart")
        _ready(broker, queue, 1)
        broker.sync_metadata()  # the queue just declared is on disk (Node.sync_metadata)
        broker.kill()
        broker.start()
        # Negative control: the old connection is gone (a restarted node has none), so the
        # publish below cannot just reuse it.
        assert not broker.management.connections()
        try:
            after = producer.publish("after the restart")
        except MqlabError:
            return  # raised: nothing was claimed
    wait_until(
        lambda: any(after.message_id in json.dumps(m) for m in broker.management.peek(queue)),
        30,
        what=f"message {after.message_id} (confirmed after the restart) in {queue}",
    )


def _watermark(broker: Node, fraction: str) -> None:
    """Set the node's memory high watermark: a tiny one raises a memory alarm, RabbitMQ then
    blocks every publishing connection (``connection.blocked``) until it clears."""
    try:
        broker.rabbitmqctl("set_vm_memory_high_watermark", fraction)
    except NotImplementedError as e:
        pytest.skip(str(e))


@pytest.mark.timeout(120)
def test_blocked_broker_fails_the_publish_within_the_bound(
    broker: Node,
    impl: Implementation,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQLAB_BLOCKED_TIMEOUT", str(BLOCKED_TIMEOUT))
    queue = impl.task_queue()
    confirmed = impl.publish_work(["confirmed before the alarm"])
    with impl.producer() as producer:
        _watermark(broker, "0.0000001")
        try:
            wait_until(lambda: "memory" in broker.management.alarms(), 30, what="the alarm")
            with pytest.raises(PublisherBlocked) as raised:
                producer.publish("during the alarm")
            line = str(raised.value)
            assert "\n" not in line
            assert "blocking publishers" in line and "memory" in line, line
            assert "MQLAB_BLOCKED_TIMEOUT" in line
            # The program: one line on stderr, its own exit code, within the bound.
            result = run_to_end(
                impl.new_task_command(["from the program"]),
                {"MQLAB_BLOCKED_TIMEOUT": str(BLOCKED_TIMEOUT)},
                timeout=60,
            )
            assert result.returncode == PublisherBlocked.exit_code, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert "blocking publishers" in lines[0] and "Traceback" not in result.stderr
        finally:
            _watermark(broker, "0.4")
            wait_until(lambda: not broker.management.alarms(), 30, what="the alarm to clear")
        # Negative control: with the alarm gone, the same producer publishes again.
        producer.publish("after the alarm")
    # Nothing confirmed is lost: the first message and the last are there (the unconfirmed
    # ones may or may not have arrived once the alarm cleared).
    assert confirmed
    wait_until(
        lambda: (stats := broker.management.queue(queue)) is not None and stats.ready >= 2,
        30,
        what="the confirmed messages in the queue",
    )


class _ScriptedProducer(BaseProducer[str]):
    """Confirms ``ok`` messages, then fails each publish with the next error of ``failures``
    (``ConnectionError``: a lost connection; ``TimeoutError``: no confirm in time; a
    ``PublishRefused``: a nack, as from a quorum queue whose leader was just killed), then
    confirms again; without ``failures`` it nacks every publish after the ``ok`` ones, and
    with :attr:`forever` set raises that. ``failover`` is ``MQLAB_FAILOVER_TIMEOUT``."""

    def __init__(self, ok: int, failures: Sequence[Exception] = (), failover: float = 0) -> None:
        super().__init__(None, queue="task_queue", declare=False)  # the hook contract
        self.settings = replace(self.settings, failover_timeout=failover)
        self.ok = ok
        self.failures = list(failures)
        self.nacks = not failures  # without failures: every publish after the ok ones
        self.forever: Exception | None = None

    def _message(self, body: str) -> str:
        return body

    def _ready(self) -> None:
        pass

    def _publish_one(self, message: str, body: str) -> None:
        if self.ok > 0:
            self.ok -= 1
        elif self.forever is not None:
            raise self.forever
        elif self.failures:
            raise self.failures.pop(0)
        elif self.nacks:
            raise PublishRefused("broker refused (nacked) a message for 'task_queue'")

    def _classify(self, error: Exception) -> Failure | None:
        if isinstance(error, ConnectionError):
            return Failure.LOST
        return Failure.UNCONFIRMED if isinstance(error, TimeoutError) else None

    def close(self) -> None:
        pass

    def _drop(self) -> None:
        pass


@pytest.mark.timeout(10)
def test_a_failed_publish_is_republished_within_the_failover_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost connection, a missing confirm and a nack in a row (a node SIGKILLed, its queue
    electing a leader): the same message is published again each time and confirmed; the
    producer counts 3 republishes. Control: with ``MQLAB_FAILOVER_TIMEOUT=0`` only a lost
    connection is retried (once), so a missing confirm or a nack raises at once, and a message
    that keeps failing raises after the timeout, saying so."""
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@127.0.0.1:1/%2F")  # settings only, never used
    failures = [ConnectionError("reset"), TimeoutError("no confirm"), PublishRefused("nack")]
    rides = _ScriptedProducer(ok=1, failures=failures, failover=30)
    assert rides.publish_all(["a", "b", "c"]) == ["a", "b", "c"]
    assert rides.republished == 3

    lost_once = _ScriptedProducer(ok=0, failures=[ConnectionError("reset")])
    assert lost_once.publish("m") == "m" and lost_once.republished == 1
    twice = [ConnectionError("reset"), ConnectionError("reset again")]
    with pytest.raises(BrokerUnreachable, match="twice"):
        _ScriptedProducer(ok=0, failures=twice).publish("m")
    with pytest.raises(PublishUnconfirmed):
        _ScriptedProducer(ok=0, failures=[TimeoutError("no confirm")]).publish("m")
    with pytest.raises(PublishRefused):
        _ScriptedProducer(ok=0, failures=[PublishRefused("nack")]).publish("m")

    lost = _ScriptedProducer(ok=0, failover=0.1)
    lost.forever = ConnectionError("reset")
    with pytest.raises(BrokerUnreachable, match=r"MQLAB_FAILOVER_TIMEOUT"):
        lost.publish("m")
    assert lost.republished >= 1
    unconfirmed_too = _ScriptedProducer(ok=3, failover=0.1)
    unconfirmed_too.forever = TimeoutError("no confirm")
    with pytest.raises(PublishUnconfirmed, match=r"message 4 of 5 .* nor when published again"):
        unconfirmed_too.publish_all(["m"] * 5)


@pytest.mark.timeout(10)
def test_a_nack_mid_batch_says_how_many_were_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`new_task --count 3000` on a cluster whose queue leader was SIGKILLed mid-run: 690 were
    confirmed, then one nack, and the one line said only "broker refused (nacked) a message":
    the user could not tell what was sent. Control: a nack of the first message has no count.
    With publisher confirms off nothing is confirmed: the count is of messages written."""
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@127.0.0.1:1/%2F")  # settings only, never used
    with pytest.raises(PublishRefused, match=r"\(2 of 5 messages were confirmed before\)"):
        _ScriptedProducer(ok=2).publish_all(["m"] * 5)
    with pytest.raises(PublishRefused) as first:
        _ScriptedProducer(ok=0).publish_all(["m"] * 5)
    assert "confirmed before" not in str(first.value)
    monkeypatch.setenv("MQLAB_CONFIRMS", "0")
    with pytest.raises(PublishRefused, match=r"2 of 5 messages were written \(not confirmed\)"):
        _ScriptedProducer(ok=2).publish_all(["m"] * 5)


@pytest.mark.timeout(10)
def test_an_unconfirmed_publish_says_it_may_still_arrive() -> None:
    """Two of three nodes SIGKILLed: the producer's one line said the unconfirmed message was
    "not counted as sent", yet once the nodes returned it was in the queue (3 -> 4 messages),
    so a user who sent it again got it twice. The line now says it may still be stored."""
    text = str(unconfirmed(5, 2, 10))
    assert "did not confirm message 3 of 10" in text and "2 were confirmed" in text
    assert "message 3 may still be stored" in text
