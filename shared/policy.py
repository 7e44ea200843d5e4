"""Dead-lettering of a quorum work queue by a policy, so it can be declared as the tutorial does.

The RabbitMQ tutorial 2 (Python, 2026) declares ``task_queue`` durable with
``x-queue-type: quorum`` and no other argument. Declaring it again with other arguments fails
with 406 PRECONDITION_FAILED, so a queue that also carries ``x-dead-letter-exchange`` cannot be
shared with the tutorial's programs. RabbitMQ recommends policies over x-arguments for
dead-lettering and the delivery limit (RabbitMQ docs, "Dead Letter Exchanges": policies "can
be updated at any moment"; "Quorum Queues": ``delivery-limit``). A policy cannot be set over
AMQP 0-9-1 (pika has no such method): it is set here through the management HTTP API
(``PUT /api/policies/<vhost>/<name>``), as the broker user of ``AMQP_URL``, which needs the
``policymaker`` or ``administrator`` tag.

The policy ``mqlab-<queue>`` matches exactly the work queue (``^<queue>$``; apply-to
``queues``, as RabbitMQ 3.10 has no ``quorum_queues`` yet; priority 10):
``dead-letter-exchange`` ``""`` (the default exchange), ``dead-letter-routing-key``
``<queue>.dead``, ``delivery-limit`` ``MQLAB_DELIVERY_LIMIT``.
Where the policy cannot be set (no management API known, no answer, the user may not set
policies), or the queue already exists with its dead-lettering in x-arguments or as a classic
queue, the caller declares the x-arguments as before (:func:`shared.queues.work_queue_arguments`):
parking is kept, and only sharing the queue with the tutorial's programs is lost.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlparse

from shared import broker_up
from shared.queues import dead_letter_queue

PRIORITY = 10
"""The policy's priority: above a catch-all policy of priority 0 (only one policy applies to a
queue, the one of highest priority: RabbitMQ docs, "Policies")."""

TIMEOUT = 5.0
"""Seconds each management API request may take."""


def management_urls() -> list[str]:
    """``MQLAB_MANAGEMENT_URL`` (several nodes' joined by ``;``, tried in order, as
    ``AMQP_URL``), else the management API of the ``mqlab broker up`` node (every node of its
    cluster) when ``AMQP_URL`` is unset, else none."""
    if os.environ.get("MQLAB_MANAGEMENT_URL"):
        return [u.strip().rstrip("/") for u in os.environ["MQLAB_MANAGEMENT_URL"].split(";")]
    if os.environ.get("AMQP_URL"):
        return []
    state = broker_up.read()
    if state is None:
        return []
    nodes = state.get("nodes") or [{"management_url": state["management_url"]}]
    return [str(n["management_url"]).rstrip("/") for n in nodes]


def _request(method: str, url: str, amqp_url: str, body: dict[str, Any] | None = None) -> Any:
    """One management API call as the user of ``amqp_url``; the decoded JSON answer or ``None``.

    Raises:
        urllib.error.URLError, OSError: no answer, or an HTTP error (``HTTPError``).
    """
    parsed = urlparse(amqp_url)
    login = f"{unquote(parsed.username or 'guest')}:{unquote(parsed.password or 'guest')}"
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(login.encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 (http only)
        text = answer.read()
    return json.loads(text) if text else None


def dead_letter_by_policy(amqp_url: str, queue: str, delivery_limit: int) -> bool:
    """Set the policy ``mqlab-<queue>`` (module docstring) on the vhost of ``amqp_url`` (one
    node's URI: its user, password and vhost) through the first management API of
    :func:`management_urls` that answers; whether
    the work queue may now be declared with the tutorial's arguments only.

    ``False`` (declare the x-arguments instead) when no management API is known or it refuses
    or does not answer, or when ``queue`` exists already as a classic queue or with
    ``x-dead-letter-exchange`` among its arguments (declaring it otherwise would fail with 406).
    Never raises.
    """
    vhost = quote(unquote(urlparse(amqp_url).path[1:] or "/"), safe="")
    for api in management_urls():  # the first that answers
        try:
            existing = _request(
                "GET", f"{api}/api/queues/{vhost}/{quote(queue, safe='')}", amqp_url
            )
        except urllib.error.HTTPError as e:
            if e.code != 404:
                return False  # refused: this user may not use the management API
            existing = None
        except (urllib.error.URLError, OSError, ValueError):
            continue  # this node does not answer: the next
        break
    else:
        return False
    if existing is not None and (
        existing.get("type") != "quorum"
        or "x-dead-letter-exchange" in (existing.get("arguments") or {})
    ):
        return False
    policy = {
        "pattern": f"^{re.escape(queue)}$",
        "apply-to": "queues",  # 3.10 knows queues, exchanges, all (no quorum_queues yet)
        "priority": PRIORITY,
        "definition": {
            "dead-letter-exchange": "",
            "dead-letter-routing-key": dead_letter_queue(queue),
            "delivery-limit": delivery_limit,
        },
    }
    try:
        _request(
            "PUT", f"{api}/api/policies/{vhost}/mqlab-{quote(queue, safe='')}", amqp_url, policy
        )
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True
