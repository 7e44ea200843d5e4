"""How the pika worker's slots hand acks back to the connection's thread
(:class:`raw_pika.settlements.Settlements`), against a recording stand-in for the channel: acks are
folded into one ``multiple=True`` ack only up to the first delivery still in a slot (a message
whose work is not done is never acked), rejects go first, and the connection's thread waiting in
:meth:`~raw_pika.settlements.Settlements.wait` is handed the ack without a wake-up of pika's I/O
loop. No broker: the end-to-end guarantees are in ``test_conformance_delivery.py``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from raw_pika.settlements import Settlements


class Recorder:
    """Stands in for the BlockingConnection and the BlockingChannel: records what is sent."""

    def __init__(self) -> None:
        self.is_open = True
        self.sent: list[tuple[str, int, bool]] = []
        self.wakeups: list[Callable[[], None]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.sent.append(("ack", tag, multiple))

    def basic_reject(self, tag: int, requeue: bool = False) -> None:
        self.sent.append(("reject", tag, requeue))

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self.wakeups.append(callback)


def settlements(delivered: int) -> tuple[Settlements, Recorder]:
    r = Recorder()
    s = Settlements(cast(Any, r), cast(Any, r))
    for tag in range(1, delivered + 1):
        s.delivered(tag)
    return s, r


@pytest.mark.timeout(10)
def test_contiguous_acks_are_folded_into_one_multiple_ack() -> None:
    s, r = settlements(3)
    for tag in (1, 2, 3):
        s.add(tag, ack=True)
    s.send()
    assert r.sent == [("ack", 3, True)]
    assert s.unsettled() == 0


@pytest.mark.timeout(10)
def test_a_delivery_still_in_a_slot_is_not_covered_by_a_later_ack() -> None:
    s, r = settlements(3)
    s.add(2, ack=True)
    s.add(3, ack=True)  # tag 1 is still running in a slot
    s.send()
    assert r.sent == [("ack", 2, False), ("ack", 3, False)]  # each on its own, 1 not covered
    assert s.unsettled() == 1
    s.add(1, ack=True)
    s.send()
    assert r.sent[-1] == ("ack", 1, False)


@pytest.mark.timeout(10)
def test_the_fold_control_a_gap_at_the_head_would_be_acked_by_multiple() -> None:
    """Negative control: what ``multiple=True`` would cover if the head were not checked, so the
    test above can fail (AMQP 0-9-1: ``multiple`` acks every outstanding tag up to it)."""
    s, r = settlements(3)
    s.add(1, ack=True)
    s.add(2, ack=True)
    s.send()
    assert r.sent == [("ack", 2, True)]  # covers 1 and 2; 3 stays out
    assert s.unsettled() == 1


@pytest.mark.timeout(10)
def test_rejects_go_first_and_the_fold_skips_them() -> None:
    s, r = settlements(3)
    s.add(1, ack=True)
    s.add(2, ack=False)  # parked: dead-lettered
    s.add(3, ack=True)
    s.send()
    # 2 is no longer outstanding once rejected, so one multiple ack settles 1 and 3
    assert r.sent == [("reject", 2, False), ("ack", 3, True)]
    assert s.unsettled() == 0


@pytest.mark.timeout(10)
def test_a_waiting_connection_thread_is_handed_the_ack_without_a_wakeup() -> None:
    s, r = settlements(1)
    slot = threading.Timer(0.05, lambda: s.add(1, ack=True))
    slot.start()
    started = time.monotonic()
    s.wait(5.0)
    slot.join()
    assert r.sent == [("ack", 1, False)]
    assert r.wakeups == []
    assert time.monotonic() - started < 5.0  # woken by the slot, not by the timeout


@pytest.mark.timeout(10)
def test_otherwise_the_first_ack_wakes_the_io_loop_once_per_batch() -> None:
    s, r = settlements(2)
    s.add(1, ack=True)
    s.add(2, ack=True)
    assert len(r.wakeups) == 1
    r.wakeups[0]()  # pika runs it on the connection's thread
    assert r.sent == [("ack", 2, True)]


@pytest.mark.timeout(10)
def test_acks_for_a_closed_channel_are_reported_not_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    s, r = settlements(1)
    s.add(1, ack=True)
    r.is_open = False
    s.send()
    assert r.sent == []
    assert "could not ack delivery 1" in capsys.readouterr().err
