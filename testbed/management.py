"""A client of RabbitMQ's management HTTP API: the figures tests and the lab observe.

Every figure comes from ``/api/...`` (RabbitMQ docs, "Management Plugin" and its HTTP API
reference). One :class:`Management` talks to one node; in a cluster any node answers for every
queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlparse

import psutil
import requests

from testbed.process import wait_until


@dataclass(frozen=True)
class QueueStats:
    """A queue as the management API reports it.

    Attributes:
        name: queue name.
        ready: messages ready for delivery.
        unacked: messages delivered and not yet acknowledged.
        consumers: number of consumers.
        durable: whether the queue is durable.
        arguments: the queue's x-arguments.
        sampled_after: epoch seconds after which the figures were collected (the start of the
            newest 1 s sample bucket; 0.0 if the API gave no samples).
        node: the node hosting the queue (a quorum queue's leader).
        queue_type: ``classic``, ``quorum`` or ``stream``.
    """

    name: str
    ready: int
    unacked: int
    consumers: int
    durable: bool
    arguments: dict[str, Any]
    sampled_after: float = 0.0
    node: str = ""
    queue_type: str = "classic"


@dataclass(frozen=True)
class ConsumerStats:
    """One consumer and the channel it consumes on.

    Attributes:
        queue: the queue consumed from.
        consumer_tag: the consumer tag.
        channel: the channel's name in the management API.
        prefetch_count: the consumer's prefetch (``basic.qos``), 0 = unlimited.
        unacked: unacknowledged messages on the consumer's channel (each implementation here
            consumes one queue per channel, so this is the consumer's own count).
        channel_prefetch: the channel-wide (global) prefetch, 0 = none.
        peer_port: the client's TCP port of the consumer's connection (to tell which OS
            process owns the consumer).
        node: the node the consumer's connection is on (in a cluster).
    """

    queue: str
    consumer_tag: str
    channel: str
    prefetch_count: int
    unacked: int
    channel_prefetch: int
    peer_port: int = 0
    node: str = ""


class Management:
    """The management HTTP API of one node, logged in with the AMQP URL's credentials.

    Parameters:
        management_url: base URL of the API and UI, e.g. ``http://127.0.0.1:15672``.
        amqp_url: the AMQP URI whose user, password and vhost to use.
        fallbacks: management URLs of further nodes of the same cluster; a request that
            cannot reach the current node is sent to the next one that answers, so the client
            keeps working while any node is down (any node answers for every queue).
    """

    def __init__(self, management_url: str, amqp_url: str, fallbacks: Iterable[str] = ()) -> None:
        self.urls = [u.rstrip("/") for u in (management_url, *fallbacks)]
        self.url = self.urls[0]
        parsed = urlparse(amqp_url.split(";")[0])
        self.session = requests.Session()
        self.session.auth = (
            unquote(parsed.username or "guest"),
            unquote(parsed.password or "guest"),
        )
        self.vhost = unquote(parsed.path[1:]) if len(parsed.path) > 1 else "/"

    def _url(self, path: str) -> str:
        return f"{self.url}/api/{path}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method`` ``/api/<path>`` on the current node, else on the next one that answers.

        Raises:
            requests.RequestException: no node answered.
        """
        kwargs.setdefault("timeout", 10)
        error: requests.RequestException | None = None
        for _ in range(len(self.urls)):
            try:
                return self.session.request(method, self._url(path), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as e:
                error = e
                # this node is down: try the next one from now on
                self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
        assert error is not None
        raise error

    def _queue_path(self, name: str) -> str:
        return f"queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}"

    def answers(self) -> bool:
        """Whether ``/api/overview`` answers with success now."""
        try:
            return self._request("GET", "overview", timeout=2).ok
        except requests.RequestException:
            return False

    def agent_failed(self) -> bool:
        """Whether this node's management agent is down: ``/api/overview`` answers with a
        server error (5xx). A node that does not answer (or slowly) is not counted as failed.

        On RabbitMQ 3.10.8 the agent's node-stats collector crashes when two of the node's TCP
        sockets share a peer address (rabbitmq-server #6097, fixed by PR #6127 in later 3.10
        releases); it crashes again on every restart, its supervisors give up and the node
        serves AMQP while this answers 500 and ``/api/consumers`` lists no consumer.
        """
        try:
            return self._request("GET", "overview", timeout=10).status_code >= 500
        except requests.RequestException:
            return False

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` and return the decoded JSON.

        Raises:
            requests.HTTPError: the API answered with an error status.
            requests.RequestException: it did not answer.
        """
        response = self._request("GET", path)
        response.raise_for_status()
        return response.json()

    def queue(self, name: str) -> QueueStats | None:
        """Stats of queue ``name`` in :attr:`vhost`, or ``None`` if it does not exist."""
        response = self._request(
            "GET", self._queue_path(name), params={"lengths_age": 5, "lengths_incr": 1}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        q = response.json()
        samples = (q.get("messages_ready_details") or {}).get("samples") or []
        newest = max((smp["timestamp"] for smp in samples), default=0)
        return QueueStats(
            name=q["name"],
            ready=int(q.get("messages_ready", 0)),
            unacked=int(q.get("messages_unacknowledged", 0)),
            consumers=int(q.get("consumers", 0)),
            durable=bool(q.get("durable")),
            arguments=dict(q.get("arguments") or {}),
            sampled_after=newest / 1000 - 1 if newest else 0.0,
            node=str(q.get("leader") or q.get("node") or ""),
            queue_type=str(q.get("type") or "classic"),
        )

    def queues(self) -> list[dict[str, Any]]:
        """Every queue in :attr:`vhost`, as the API gives them."""
        result: list[dict[str, Any]] = self.api(f"queues/{quote(self.vhost, safe='')}")
        return result

    def queue_names(self) -> list[str]:
        """Names of every queue in :attr:`vhost` (the queues themselves, listed as they are
        now; only the name column is asked for, no statistics).

        Raises:
            requests.HTTPError: the API answered with an error status.
            requests.RequestException: it did not answer.
        """
        response = self._request(
            "GET", f"queues/{quote(self.vhost, safe='')}", params={"columns": "name"}
        )
        response.raise_for_status()
        return [str(q["name"]) for q in response.json()]

    def consumers(self, queue: str | None = None) -> list[ConsumerStats]:
        """Consumers in :attr:`vhost` (of ``queue`` only, if given), with channel figures."""
        vhost = quote(self.vhost, safe="")
        channels = {c["name"]: c for c in self.api(f"vhosts/{vhost}/channels")}
        out = []
        for c in self.api(f"consumers/{vhost}"):
            if queue is not None and c["queue"]["name"] != queue:
                continue
            # ``channel_details: []`` for a consumer whose channel the stats database has not
            # seen yet (just opened) or no longer has (just closed): count it, without figures.
            details = c.get("channel_details")
            details = details if isinstance(details, dict) else {}
            name = str(details.get("name", ""))
            channel = channels.get(name, {})
            out.append(
                ConsumerStats(
                    queue=c["queue"]["name"],
                    consumer_tag=c["consumer_tag"],
                    channel=name,
                    prefetch_count=int(c.get("prefetch_count", 0)),
                    unacked=int(channel.get("messages_unacknowledged", 0)),
                    channel_prefetch=int(channel.get("global_prefetch_count", 0) or 0),
                    peer_port=int(details.get("peer_port") or 0),
                    node=str(details.get("node") or channel.get("node") or ""),
                )
            )
        return out

    def consumers_of(self, queue: str, pids: Iterable[int]) -> list[ConsumerStats]:
        """Consumers of ``queue`` whose connection belongs to one of the OS processes ``pids``.

        Matches each consumer's connection peer port against the processes' TCP sockets, so a
        stale entry of a worker that was just killed is never mistaken for a new one.
        """
        consumers = self.consumers(queue)
        if not consumers:  # skip the process scan (psutil reads /proc: ~10 ms of CPU)
            return []
        ports = set()
        for pid in pids:
            try:
                ports |= {c.laddr.port for c in psutil.Process(pid).net_connections("tcp")}
            except psutil.Error:
                continue
        return [c for c in consumers if c.peer_port in ports]

    def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` if it exists (with its messages).

        Raises:
            requests.HTTPError: the API refused.
        """
        response = self._request("DELETE", self._queue_path(name))
        if response.status_code not in (204, 404):
            response.raise_for_status()

    def versions(self) -> dict[str, str]:
        """``{"rabbitmq": ..., "erlang": ...}`` versions reported by the node."""
        overview = self.api("overview")
        return {
            "rabbitmq": str(overview.get("rabbitmq_version", "?")),
            "erlang": str(overview.get("erlang_version", "?")),
        }

    def wait_for_queue(
        self,
        name: str,
        timeout: float,
        *,
        ready: int | None = None,
        fresh_after: float | None = None,
        **expect: int,
    ) -> QueueStats:
        """Poll until queue ``name`` reports ``ready`` messages and other ``expect``-ed figures.

        Parameters:
            name: the queue.
            timeout: deadline in seconds.
            ready: expected :attr:`QueueStats.ready` (ignored if ``None``).
            fresh_after: epoch seconds; only figures collected after this moment count, so a
                stale sample from before (an empty queue before the publish, say) cannot
                satisfy the wait.
            expect: other :class:`QueueStats` fields and their expected values
                (``unacked=0``, ``consumers=2``).

        Raises:
            TimeoutError: the figures did not match in time (the message shows the last ones).
        """
        want = dict(expect)
        if ready is not None:
            want["ready"] = ready
        last: list[QueueStats | None] = [None]

        def matches() -> bool:
            stats = self.queue(name)
            last[0] = stats
            if stats is None or (fresh_after is not None and stats.sampled_after < fresh_after):
                return False
            return all(getattr(stats, k) == v for k, v in want.items())

        try:
            wait_until(matches, timeout, interval=0.1, what=f"queue {name} with {want}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last seen: {last[0]}") from None
        stats = last[0]
        assert stats is not None
        return stats

    # -- access control and alarms (for the bad-input and producer tests) -------------------

    def _put(self, path: str, body: dict[str, Any]) -> None:
        response = self.session.put(self._url(path), json=body, timeout=10)
        response.raise_for_status()

    def add_user(self, name: str, password: str, tags: str = "") -> None:
        """Create (or update) user ``name``: ``PUT /api/users/<name>``.

        Raises:
            requests.HTTPError: the API refused (the logged-in user is not an administrator).
        """
        self._put(f"users/{quote(name, safe='')}", {"password": password, "tags": tags})

    def delete_user(self, name: str) -> None:
        """Delete user ``name`` if it exists: ``DELETE /api/users/<name>``."""
        response = self.session.delete(self._url(f"users/{quote(name, safe='')}"), timeout=10)
        if response.status_code not in (204, 404):
            response.raise_for_status()

    def set_permissions(
        self, user: str, configure: str, write: str, read: str, vhost: str | None = None
    ) -> None:
        """Grant ``user`` the three permission regexes on ``vhost`` (default :attr:`vhost`):
        ``PUT /api/permissions/<vhost>/<user>`` (RabbitMQ docs, "Access Control")."""
        where = quote(vhost or self.vhost, safe="")
        self._put(
            f"permissions/{where}/{quote(user, safe='')}",
            {"configure": configure, "write": write, "read": read},
        )

    def connections(self) -> list[dict[str, Any]]:
        """Every client connection the node has (``GET /api/connections``)."""
        result: list[dict[str, Any]] = self.api("connections")
        return result

    def alarms(self) -> list[str]:
        """The resource alarms in force on any node: ``"memory"``, ``"disk"``
        (``mem_alarm`` / ``disk_free_alarm`` of ``GET /api/nodes``)."""
        found = []
        for node in self.api("nodes"):
            if node.get("mem_alarm"):
                found.append("memory")
            if node.get("disk_free_alarm"):
                found.append("disk")
        return found

    def peek(self, name: str, count: int = 100) -> list[dict[str, Any]]:
        """Up to ``count`` messages of queue ``name``, put back at once
        (``POST /api/queues/<vhost>/<name>/get`` with ``ackmode=ack_requeue_true``: they come
        back flagged redelivered). Each has ``payload`` and ``properties``.

        Raises:
            requests.HTTPError: the API refused (no such queue: 404).
        """
        response = self.session.post(
            self._url(self._queue_path(name) + "/get"),
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"},
            timeout=10,
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result
