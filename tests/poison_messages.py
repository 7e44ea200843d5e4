"""Poison messages for each implementation, published raw with pika, and the dead-letter queue
read back (no framework code: the bytes on the wire are the point).

Every message published here carries the header :data:`KIND_HEADER` naming its kind, so a
parked copy can be matched to what was sent, body and headers compared.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika

from shared.contract import PUBLISHED_AT_HEADER
from shared.tasks import FAIL_MARKER

KIND_HEADER = "x-poison-kind"
"""Header naming the kind of each message the tests publish raw."""


@dataclass(frozen=True)
class Raw:
    """One raw message: body, properties and what the test expects of it.

    Attributes:
        kind: a short name, also sent in :data:`KIND_HEADER`.
        body: the exact bytes published.
        headers: AMQP headers (plus :data:`KIND_HEADER`).
        content_type: the ``content_type`` property.
        parked: whether it must end in the dead-letter queue (else: executed once).
        attempts: journal rows expected for its message_id (executions before parking).
        message_id: the AMQP ``message_id`` property (also the task id where one is encoded).
        properties: further AMQP properties (``reply_to``, ``priority``, ``expiration``...).
    """

    kind: str
    body: bytes
    headers: dict[str, Any]
    content_type: str
    parked: bool
    attempts: int
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    properties: dict[str, Any] = field(default_factory=dict)


def publish_raw(amqp_url: str, queue: str, messages: list[Raw]) -> None:
    """Publish ``messages`` to ``queue`` through the default exchange, persistent, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for m in messages:
            channel.basic_publish(
                "",
                queue,
                m.body,
                pika.BasicProperties(
                    delivery_mode=2,
                    content_type=m.content_type,
                    content_encoding="utf-8",
                    message_id=m.message_id,
                    headers={**m.headers, KIND_HEADER: m.kind},
                    **m.properties,
                ),
                mandatory=True,
            )
    finally:
        connection.close()


@dataclass(frozen=True)
class Parked:
    """A message read back from a dead-letter queue."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None


def read_queue(amqp_url: str, queue: str) -> list[Parked]:
    """Every message in ``queue``, read with ``basic_get`` and left there (the connection closes
    without acking, so RabbitMQ requeues them)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    out: list[Parked] = []
    try:
        channel = connection.channel()
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return out
            out.append(Parked(body, dict(props.headers or {}), props.message_id))
    finally:
        connection.close()


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# -- pika: the body is the task's text --------------------------------------------------------


def pika_messages(queue: str) -> list[Raw]:
    """Raw messages for the pika worker (body = text of the ``work`` task)."""
    text = "text/plain"
    return [
        Raw("control", b"raw control", {}, text, parked=False, attempts=1),
        Raw("not-utf8", b"\xff\xfe not UTF-8", {}, text, parked=True, attempts=0),
        Raw("header-bytes", b"bad header bytes", {PUBLISHED_AT_HEADER: b"\xff\xfe"}, text,
            parked=False, attempts=1),
        Raw("header-nan", b"bad header nan", {PUBLISHED_AT_HEADER: "nan"}, text,
            parked=False, attempts=1),
        Raw("non-ascii", "h\u00e9llo \u2713".encode(), {}, text, parked=False, attempts=1),
    ]  # fmt: skip


# -- Celery: task protocol 2 (Celery docs, "Message Protocol") ---------------------------------


def _celery(
    kind: str,
    *,
    task: str = "celery_impl.work",
    args: object = ("raw control",),
    body: bytes | None = None,
    parked: bool,
    attempts: int,
    edit: Callable[[dict[str, Any]], None] | None = None,
    properties: dict[str, Any] | None = None,
) -> Raw:
    message_id = str(uuid.uuid4())
    headers: dict[str, Any] = {
        "lang": "py", "task": task, "id": message_id, "root_id": message_id,
        "parent_id": None, "group": None, "retries": 0, "timelimit": [None, None],
        "eta": None, "expires": None, "argsrepr": repr(args), "kwargsrepr": "{}",
        PUBLISHED_AT_HEADER: repr(time.time()),
    }  # fmt: skip
    if edit:
        edit(headers)
    if body is None:
        body = _json([list(args) if isinstance(args, tuple) else args, {}, {}])
    return Raw(
        kind, body, headers, "application/json", parked, attempts, message_id, properties or {}
    )


def celery_messages(queue: str) -> list[Raw]:
    """Raw Celery task messages: a valid one (the control) and one per poison kind."""

    def drop_id(h: dict[str, Any]) -> None:
        del h["id"]

    def bad_timelimit(h: dict[str, Any]) -> None:
        h["timelimit"] = "abc"

    def bad_header(h: dict[str, Any]) -> None:
        h[PUBLISHED_AT_HEADER] = b"\xff\xfe"

    def nan_header(h: dict[str, Any]) -> None:
        h[PUBLISHED_AT_HEADER] = "nan"

    def own_retries(h: dict[str, Any]) -> None:
        h["retries"] = -100  # Celery's retry bound counts from here; ours does not

    return [
        _celery("control", parked=False, attempts=1),
        _celery("not-json", body=b"\xff{ not json", parked=True, attempts=0),
        _celery("unknown-task", task="celery_impl.no_such_task", parked=True, attempts=0),
        _celery("wrong-args", args=("a", "b", "c"), parked=True, attempts=0),
        _celery("body-[1]", body=b"[1]", parked=True, attempts=0),
        _celery("no-id", edit=drop_id, parked=True, attempts=0),
        _celery("timelimit-abc", edit=bad_timelimit, parked=False, attempts=1),
        _celery("header-bytes", edit=bad_header, parked=False, attempts=1),
        _celery("header-nan", edit=nan_header, parked=False, attempts=1),
        _celery("own-retries", args=("[fail]",), edit=own_retries, parked=True, attempts=3),
        _celery("kwargs-list", body=b'[["x"], [1], {}]', parked=True, attempts=0),
        _celery("embed-list", body=b'[["x"], {}, [1]]', parked=True, attempts=0),
        _celery(
            "callbacks",
            body=b'[["x"], {}, {"callbacks": [{"task": "other"}]}]',
            parked=True,
            attempts=0,
        ),
        _celery("non-ascii", args=("h\u00e9llo \u2713",), parked=False, attempts=1),
    ]


# -- Dramatiq: its JSON message (dramatiq.Message.asdict) --------------------------------------


def _dramatiq(
    queue: str,
    kind: str,
    *,
    parked: bool,
    attempts: int,
    body: bytes | None = None,
    properties: dict[str, Any] | None = None,
    **fields: Any,
) -> Raw:
    message_id = str(uuid.uuid4())
    message: dict[str, Any] = {
        "queue_name": queue, "actor_name": "work", "args": ["raw control"], "kwargs": {},
        "options": {}, "message_id": message_id, "message_timestamp": int(time.time() * 1000),
    }  # fmt: skip
    message.update(fields)
    if body is None:
        body = json.dumps(message).encode()  # allow_nan: NaN is written as NaN, as Python does
    return Raw(kind, body, {}, "application/json", parked, attempts, message_id, properties or {})


def dramatiq_messages(queue: str) -> list[Raw]:
    """Raw Dramatiq messages: a valid one (the control) and one per poison kind."""
    return [
        _dramatiq(queue, "control", parked=False, attempts=1),
        _dramatiq(queue, "not-json", body=b"\xff{ not json", parked=True, attempts=0),
        _dramatiq(queue, "unknown-actor", actor_name="no_such_actor", parked=True, attempts=0),
        _dramatiq(queue, "wrong-args", args=["a", "b", "c"], parked=True, attempts=0),
        _dramatiq(queue, "timestamp-nan", message_timestamp=math.nan, parked=False, attempts=1),
        _dramatiq(queue, "timestamp-str", message_timestamp="x", parked=False, attempts=1),
        _dramatiq(queue, "own-max-retries", args=["[fail]"], parked=True, attempts=3,
                  options={"max_retries": 15, "retries": -5}),
        _dramatiq(queue, "foreign-queue", queue_name="someone.else", parked=True, attempts=0),
        _dramatiq(queue, "options-list", options=[1], parked=True, attempts=0),
        _dramatiq(queue, "kwargs-list", kwargs=[1], parked=True, attempts=0),
        _dramatiq(queue, "non-ascii", args=["h\u00e9llo \u2713"], parked=False, attempts=1),
    ]  # fmt: skip


RAW_MESSAGES: dict[str, Callable[[str], list[Raw]]] = {
    "pika": pika_messages,
    "celery": celery_messages,
    "dramatiq": dramatiq_messages,
    "faststream": pika_messages,  # the body is the task's text there too (no framework envelope)
}
"""Raw poison (and control) messages per implementation, given the work queue's name."""


# -- hostile fields: every field a framework reads from a message, in a hostile form -----------
#
# By class: wrong type, out of range, past and future times, references to other queues or
# tasks. Each must run once or be parked, and steer nothing else (tests/test_message_fields.py).

INJECTED_QUEUE = "mqlab-injected.q"
"""A queue a hostile message names; it must never come to exist."""

AN_HOUR_MS = 3_600_000


def _iso(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()


def pika_hostile(queue: str) -> list[Raw]:
    """The hand-written worker reads the body and the contract header; properties steer nothing."""
    text = "text/plain"
    return [
        Raw("prop-reply-to", b"hostile reply_to", {}, text, parked=False, attempts=1,
            properties={"reply_to": INJECTED_QUEUE, "correlation_id": "x"}),
        Raw("prop-priority", b"hostile priority", {}, text, parked=False, attempts=1,
            properties={"priority": 255}),
        Raw("header-future", b"publish time ahead", {PUBLISHED_AT_HEADER: "32503680000.0"},
            text, parked=False, attempts=1),
        Raw("header-negative", b"publish time negative", {PUBLISHED_AT_HEADER: "-1"}, text,
            parked=False, attempts=1),
        Raw("header-list", b"publish time a list", {PUBLISHED_AT_HEADER: [1, 2]}, text,
            parked=False, attempts=1),
    ]  # fmt: skip


def celery_hostile(queue: str) -> list[Raw]:
    """Celery task messages with hostile protocol fields (Celery docs, "Message Protocol")."""

    def header(key: str, value: object) -> Callable[[dict[str, Any]], None]:
        def edit(h: dict[str, Any]) -> None:
            h[key] = value

        return edit

    def proto1(kind: str, **fields: Any) -> Raw:
        message_id = str(uuid.uuid4())
        body = {"task": "celery_impl.work", "id": message_id, "args": ["proto1"], "kwargs": {},
                "retries": 0, "eta": None, "expires": None, "utc": True, **fields}  # fmt: skip
        return Raw(kind, _json(body), {}, "application/json", True, 0, message_id)

    fail = (f"hostile {FAIL_MARKER}",)
    slow = ("." * 15,)  # 1.5 s: past a 1 s hard time limit
    return [
        # protocol 1: task fields in the body, none of them checked by Celery's expiry check
        proto1("p1-callbacks", callbacks=[{"task": "celery_impl.hello", "args": ["injected"]}]),
        proto1("p1-timelimit", timelimit=[1, 1], args=list(slow)),
        proto1("p1-expires-past", expires=_iso(-3600)),
        # wrong type
        _celery("id-int", edit=header("id", 123), parked=True, attempts=0),
        _celery("task-list", edit=header("task", ["celery_impl.work"]), parked=True, attempts=0),
        _celery("retries-str", args=fail, edit=header("retries", "x"), parked=True, attempts=3),
        _celery("eta-garbage", edit=header("eta", "not a time"), parked=True, attempts=0),
        _celery("expires-int", edit=header("expires", 12345), parked=True, attempts=0),
        _celery("shadow-list", edit=header("shadow", [1]), parked=False, attempts=1),
        _celery("stamps-str", edit=header("stamps", "x"), parked=False, attempts=1),
        # out of range
        _celery("timelimit-1s", args=slow, edit=header("timelimit", [1, 1]),
                parked=False, attempts=1),
        _celery("retries-300", args=fail, edit=header("retries", 300), parked=True, attempts=3),
        _celery("prop-priority", parked=False, attempts=1, properties={"priority": 255}),
        # past and future times
        _celery("eta-past", edit=header("eta", _iso(-3600)), parked=True, attempts=0),
        _celery("eta-future", edit=header("eta", _iso(3600)), parked=True, attempts=0),
        _celery("expires-future", edit=header("expires", _iso(3600)), parked=False, attempts=1),
        # references to other queues or tasks
        _celery("reply-to", parked=False, attempts=1,
                properties={"reply_to": INJECTED_QUEUE, "correlation_id": "x"}),
        _celery("builtin-task", task="celery.backend_cleanup", args=(), parked=True, attempts=0),
        _celery("group-task", task="celery.group", parked=True, attempts=0,
                body=_json([[[{"task": "celery_impl.hello", "args": ["injected"]}]], {}, {}])),
        _celery("hello-on-work-queue", task="celery_impl.hello", parked=True, attempts=0),
        _celery("errbacks", body=b'[["x"], {}, {"errbacks": [{"task": "celery_impl.hello"}]}]',
                parked=True, attempts=0),
        _celery("chain", body=b'[["x"], {}, {"chain": [{"task": "celery_impl.hello"}]}]',
                parked=True, attempts=0),
        _celery("group-header", edit=header("group", "g-1"), parked=False, attempts=1),
    ]  # fmt: skip


def dramatiq_hostile(queue: str) -> list[Raw]:
    """Dramatiq messages with hostile envelope fields and options (Dramatiq 2.2's middleware)."""
    now = int(time.time() * 1000)
    fail = [f"hostile {FAIL_MARKER}"]
    injected = {"queue_name": INJECTED_QUEUE, "actor_name": "work", "args": ["injected"],
                "kwargs": {}, "options": {}, "message_id": str(uuid.uuid4()),
                "message_timestamp": now}  # fmt: skip

    def d(kind: str, parked: bool, attempts: int, **fields: Any) -> Raw:
        return _dramatiq(queue, kind, parked=parked, attempts=attempts, **fields)

    return [
        # references to other queues or tasks
        d("pipe-target", False, 1, options={"pipe_target": injected}),
        d("on-success", False, 1, options={"on_success": "hello"}),
        d("on-failure", True, 3, args=fail, options={"on_failure": "hello"}),
        d("on-retry-exhausted", True, 3, args=fail, options={"on_retry_exhausted": "hello"}),
        d("hello-on-work-queue", True, 0, actor_name="hello"),
        d("group-callbacks", False, 1,
          options={"group_completion_uuid": "g", "group_completion_callbacks": [injected]}),
        # wrong type
        d("priority-str", True, 3, args=fail, options={"broker_priority": "high"}),
        d("retries-str", True, 3, args=fail, options={"retries": "x"}),
        d("throws-str", True, 3, args=fail, options={"throws": "Exception"}),
        d("eta-str", True, 0, options={"eta": "soon"}),
        d("message-id-null", True, 0, message_id=None),
        d("message-id-list", True, 0, message_id=["a"]),
        d("args-dict", False, 1, args={"body": "x"}),  # Dramatiq makes it a tuple of its keys
        d("time-limit-str", False, 1, options={"time_limit": "x"}),
        # out of range
        d("priority-300", True, 3, args=fail, options={"broker_priority": 300}),
        d("max-retries-100", True, 3, args=fail, options={"max_retries": 100}),
        d("time-limit-1ms", False, 1, args=["." * 3], options={"time_limit": 1}),
        d("max-age-1ms", False, 1, options={"max_age": 1}),
        d("notify-shutdown", False, 1, options={"notify_shutdown": True}),
        # past and future times
        d("eta-past", False, 1, options={"eta": now - AN_HOUR_MS}),
        d("eta-future", True, 0, options={"eta": now + AN_HOUR_MS}),
        d("timestamp-future", False, 1, message_timestamp=now + 100 * AN_HOUR_MS),
        d("timestamp-negative", False, 1, message_timestamp=-1),
    ]  # fmt: skip


def faststream_hostile(queue: str) -> list[Raw]:
    """FastStream reads a message's ``reply_to`` (it publishes the handler's result there, to
    ``queue`` or ``queue|exchange``: FastStream's RPC replies), ``content_type`` (its decoder)
    and ``message_id``/``correlation_id``; the worker turns replies off (``no_reply=True``) and
    decodes no content type. A reply to ``<queue>.dead`` would show as a message parked there."""
    dead = f"{queue}.dead"
    text = "text/plain"
    return pika_hostile(queue) + [
        Raw("reply-to-dead", b"hostile reply_to own dead", {}, text, parked=False, attempts=1,
            properties={"reply_to": dead, "correlation_id": "x"}),
        Raw("reply-to-exchange", b"hostile reply_to exchange", {}, text, parked=False,
            attempts=1, properties={"reply_to": f"{dead}|"}),
        Raw("content-type-json", b"{not json", {}, "application/json", parked=False,
            attempts=1),
        Raw("content-type-odd", b"odd content type", {}, "application/x-python-pickle",
            parked=False, attempts=1, properties={"type": "faststream.rpc"}),
    ]  # fmt: skip


HOSTILE_MESSAGES: dict[str, Callable[[str], list[Raw]]] = {
    "pika": pika_hostile,
    "celery": celery_hostile,
    "dramatiq": dramatiq_hostile,
    "faststream": faststream_hostile,
}
"""Messages with each field the framework reads in a hostile form, given the work queue."""
