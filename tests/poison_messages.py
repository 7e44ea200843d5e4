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
from typing import Any

import pika

from shared.contract import PUBLISHED_AT_HEADER

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
    """

    kind: str
    body: bytes
    headers: dict[str, Any]
    content_type: str
    parked: bool
    attempts: int
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))


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
    return Raw(kind, body, headers, "application/json", parked, attempts, message_id)


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
    return Raw(kind, body, {}, "application/json", parked, attempts, message_id)


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
