"""A RabbitMQ node mqlab talks to: the interface every provider implements, and the external one.

Use a provider through :func:`testbed.provider.provision`::

    with provision() as node:               # MQLAB_BROKER=auto|local|docker|external
        print(node.amqp_url, node.management_url)
        node.kill()                         # SIGKILL the node (local, docker)
        node.start()                        # boot it again on the same data
        print(node.management.queue("task_queue"))

Providers: :class:`testbed.local_node.LocalNode`, :class:`testbed.docker_node.DockerNode` and
:class:`ExternalNode` (below).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from urllib.parse import urlparse

from testbed.management import Management
from testbed.process import wait_until


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mask_password(url: str) -> str:
    """``url`` with its password replaced by ``**`` (as Celery prints broker URLs); each URL of
    a ``;``-joined list of nodes."""
    if ";" in url:
        return ";".join(mask_password(part) for part in url.split(";"))
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return url.replace(f":{parsed.password}@", ":**@", 1)


class Node(ABC):
    """A RabbitMQ node mqlab can talk to, and, for private nodes, kill and start again.

    Attributes:
        provider: ``"local"``, ``"docker"`` or ``"external"``.
        amqp_url: AMQP URI for clients.
        management_url: base URL of the management HTTP API and UI.
        can_kill: whether :meth:`kill` / :meth:`start` are supported (private nodes only).
    """

    provider: str = ""
    can_kill: bool = False
    amqp_url: str
    management_url: str
    _management: Management | None = None

    @property
    def management(self) -> Management:
        """The node's management HTTP API client."""
        if self._management is None:
            self._management = Management(self.management_url, self.amqp_url)
        return self._management

    @property
    def amqp_urls(self) -> list[str]:
        """Every node's AMQP URI (one for a single node; each node's for a cluster)."""
        return [self.amqp_url]

    @property
    def failover_url(self) -> str:
        """``AMQP_URL`` for a client that fails over between :attr:`amqp_urls` (``;``-joined)."""
        return ";".join(self.amqp_urls)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def start(self) -> None:
        """Start the node (again, on the same data) and wait until it is ready."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the node: no clean shutdown, as in a crash.

        Raises:
            NotImplementedError: the provider cannot (external brokers).
        """

    @abstractmethod
    def close(self) -> None:
        """Tear the node down for good and remove its data (a no-op for external brokers)."""

    def sync_metadata(self) -> None:
        """Flush the broker's metadata store to disk now (a no-op where mqlab cannot).

        RabbitMQ 3.10 keeps queue definitions in Mnesia, which writes each transaction to its
        log but does not fsync it per transaction: a durable queue declared less than about a
        second before the node is SIGKILLed can be missing after the restart (reproduced here:
        1 of 4 lost at 50 ms; none once ``mnesia:sync_log()`` ran before the kill). Likewise a
        quorum queue whose members Ra has not yet saved in its directory (every 500 ms) has no
        leader after a whole-cluster crash. A test that kills the broker calls this right
        before, so it checks the messages and the clients, not that metadata window (README,
        "Limits worth knowing").
        """
        return None  # external and Docker nodes: nothing mqlab can ask them to flush

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` against this node (private local nodes only).

        Raises:
            NotImplementedError: this provider cannot.
        """
        raise NotImplementedError(f"rabbitmqctl is not available for a {self.provider} node")

    def amqp_accepts(self) -> bool:
        """Whether the AMQP port accepts a TCP connection now."""
        url = urlparse(self.amqp_url)
        try:
            with socket.create_connection((url.hostname or "localhost", url.port or 5672), 1):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until AMQP connections are accepted and the management API answers.

        Raises:
            TimeoutError: not ready within ``timeout`` seconds.
        """
        url = urlparse(self.amqp_url)
        what = f"AMQP port {url.hostname or 'localhost'}:{url.port or 5672}"
        wait_until(self.amqp_accepts, timeout, interval=0.2, what=what)
        wait_until(
            self.management.answers,
            timeout,
            interval=0.2,
            what=f"management API {self.management_url}",
        )

    def describe(self) -> str:
        """One line naming the provider and both URLs (password masked), for people to read."""
        return (
            f"RabbitMQ ({self.provider}): AMQP {mask_password(self.amqp_url)}  "
            f"management UI {self.management_url}"
        )


class ExternalNode(Node):
    """A broker somebody else runs; mqlab never kills or purges it wholesale.

    Parameters:
        amqp_url: its AMQP URI; default ``AMQP_URL``.
        management_url: its management API; default ``MQLAB_MANAGEMENT_URL``, else
            ``http://<amqp host>:15672``.
    """

    provider = "external"
    can_kill = False

    def __init__(self, amqp_url: str | None = None, management_url: str | None = None) -> None:
        from shared import settings

        self.amqp_url = amqp_url or settings.load().amqp_url
        host = urlparse(self.amqp_url).hostname or "localhost"
        self.management_url = (
            management_url or os.environ.get("MQLAB_MANAGEMENT_URL") or f"http://{host}:15672"
        )

    def start(self) -> None:
        """Check the broker answers (10 s).

        Raises:
            TimeoutError: the AMQP port or the management API does not answer.
        """
        self.wait_ready(timeout=10)

    def kill(self) -> None:
        raise NotImplementedError("an external broker cannot be killed by mqlab")

    def close(self) -> None:
        """Nothing to tear down."""
