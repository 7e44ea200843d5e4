"""Broker provisioning: one interface over a private local node, a Docker container, or a URL.

Use it as a context manager::

    with Broker.provision() as broker:          # MQLAB_BROKER=auto|local|docker|external
        print(broker.amqp_url, broker.management_url)
        broker.kill()                           # SIGKILL the node (local, docker)
        broker.start()                          # boot it again on the same data
        print(broker.queue("task_queue"))       # figures from the management HTTP API

Providers:

* :class:`LocalBroker` — a private node from the installed ``rabbitmq-server`` binary: its own
  node name, data directory, Erlang cookie (``HOME``), loopback-only AMQP, management and
  distribution ports, a ``collect_statistics_interval`` of 250 ms and 1 s sample retention
  granularity, so management figures sampled during a test are at most about a second old
  (RabbitMQ docs, "Management Plugin": statistics interval and sample retention policies).
* :class:`DockerBroker` — ``rabbitmq:3-management`` through testcontainers, when an engine
  answers.
* :class:`ExternalBroker` — ``AMQP_URL`` as given; it cannot be killed, so destructive checks
  skip on it.

``auto`` uses an explicitly set ``AMQP_URL`` as external, otherwise a private node (local binary,
else Docker), else raises :class:`~shared.errors.BrokerUnavailable` saying how to get RabbitMQ.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import psutil
import requests

from shared import reaper
from shared.errors import BrokerUnavailable
from shared.process import Command, GroupProcess, wait_until

STATS_INTERVAL_MS = 250
"""``collect_statistics_interval`` of private nodes, milliseconds (RabbitMQ default: 5000)."""

HOW_TO_GET_RABBITMQ = (
    "no RabbitMQ available: install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server; "
    "macOS: brew install rabbitmq), or start a Docker engine, or set AMQP_URL to a broker you "
    "run (MQLAB_BROKER=external)"
)


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
    """

    name: str
    ready: int
    unacked: int
    consumers: int
    durable: bool
    arguments: dict[str, Any]
    sampled_after: float = 0.0


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
    """

    queue: str
    consumer_tag: str
    channel: str
    prefetch_count: int
    unacked: int
    channel_prefetch: int
    peer_port: int = 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker(ABC):
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

    @staticmethod
    @contextmanager
    def provision(kind: str | None = None) -> Iterator[Broker]:
        """Provide a broker for the duration of a ``with`` block, and tear it down after.

        Parameters:
            kind: ``auto``, ``local``, ``docker`` or ``external``; default ``MQLAB_BROKER`` or
                ``auto``.

        Raises:
            BrokerUnavailable: the requested provider cannot run here (the message says how to
                get RabbitMQ).
        """
        broker = make_broker(kind)
        try:
            broker.start()
            yield broker
        finally:
            broker.close()

    # -- lifecycle ------------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None:
        """Start the node (again, on the same data) and wait until it is ready."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the node: no clean shutdown, as in a crash.

        Raises:
            NotImplementedError: the provider cannot (external brokers).
        """

    def restart(self) -> None:
        """:meth:`kill` then :meth:`start`."""
        self.kill()
        self.start()

    @abstractmethod
    def close(self) -> None:
        """Tear the node down for good and remove its data (a no-op for external brokers)."""

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until AMQP connections are accepted and the management API answers.

        Raises:
            TimeoutError: not ready within ``timeout`` seconds.
        """
        url = urlparse(self.amqp_url)
        host, port = url.hostname or "localhost", url.port or 5672

        def amqp_up() -> bool:
            try:
                with socket.create_connection((host, port), timeout=1):
                    return True
            except OSError:
                return False

        def api_up() -> bool:
            try:
                return self._session.get(self._api_url("overview"), timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(amqp_up, timeout, interval=0.2, what=f"AMQP port {host}:{port}")
        wait_until(api_up, timeout, interval=0.2, what=f"management API {self.management_url}")

    # -- management HTTP API ----------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self, "_http", None)
        if session is None:
            url = urlparse(self.amqp_url)
            session = requests.Session()
            session.auth = (unquote(url.username or "guest"), unquote(url.password or "guest"))
            self._http = session
        return session

    @property
    def vhost(self) -> str:
        """The vhost named by :attr:`amqp_url` (``/`` when the path is empty)."""
        path = urlparse(self.amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    def _api_url(self, path: str) -> str:
        return f"{self.management_url.rstrip('/')}/api/{path}"

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` from the management API and return the decoded JSON.

        Raises:
            requests.HTTPError: the API answered with an error status.
        """
        response = self._session.get(self._api_url(path), timeout=10)
        response.raise_for_status()
        return response.json()

    def queue(self, name: str) -> QueueStats | None:
        """Stats of queue ``name`` in :attr:`vhost`, or ``None`` if it does not exist."""
        response = self._session.get(
            self._api_url(f"queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}"),
            params={"lengths_age": 5, "lengths_incr": 1},
            timeout=10,
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
        )

    def queue_names(self) -> list[str]:
        """Names of every queue in :attr:`vhost`."""
        return [q["name"] for q in self.api(f"queues/{quote(self.vhost, safe='')}")]

    def consumers(self, queue: str | None = None) -> list[ConsumerStats]:
        """Consumers in :attr:`vhost` (of ``queue`` only, if given), with channel figures."""
        vhost = quote(self.vhost, safe="")
        channels = {c["name"]: c for c in self.api(f"vhosts/{vhost}/channels")}
        out = []
        for c in self.api(f"consumers/{vhost}"):
            if queue is not None and c["queue"]["name"] != queue:
                continue
            # The API gives ``channel_details: []`` for a consumer whose channel the stats
            # database has not seen yet (just opened) or no longer has (just closed): count it,
            # with no channel figures.
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
                )
            )
        return out

    def consumers_of(self, queue: str, pids: Iterable[int]) -> list[ConsumerStats]:
        """Consumers of ``queue`` whose connection belongs to one of the OS processes ``pids``.

        Matches each consumer's connection peer port against the processes' TCP sockets, so a
        stale entry of a worker that was just killed is never mistaken for a new one.
        """
        ports = set()
        for pid in pids:
            try:
                ports |= {c.laddr.port for c in psutil.Process(pid).net_connections("tcp")}
            except psutil.Error:
                continue
        return [c for c in self.consumers(queue) if c.peer_port in ports]

    def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` if it exists (with its messages)."""
        response = self._session.delete(
            self._api_url(f"queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}"),
            timeout=10,
        )
        if response.status_code not in (204, 404):
            response.raise_for_status()

    def versions(self) -> dict[str, str]:
        """``{"rabbitmq": ..., "erlang": ...}`` versions reported by the node."""
        overview = self.api("overview")
        return {
            "rabbitmq": str(overview.get("rabbitmq_version", "?")),
            "erlang": str(overview.get("erlang_version", "?")),
        }

    def describe(self) -> str:
        """One line naming the provider and both URLs, for people to read."""
        return (
            f"RabbitMQ ({self.provider}): AMQP {self.amqp_url}  "
            f"management UI {self.management_url} (guest/guest)"
        )


# -- private local node ---------------------------------------------------------------------


def _find(name: str) -> str | None:
    # Debian's /usr/sbin wrappers switch to the rabbitmq user; the real scripts live here and
    # can be run by the user who owns the data directory (root, in CI).
    direct = Path("/usr/lib/rabbitmq/bin") / name
    if direct.exists():
        return str(direct)
    return shutil.which(name)


def local_binary_available() -> bool:
    """Whether a ``rabbitmq-server`` binary is installed."""
    return _find("rabbitmq-server") is not None and _find("rabbitmqctl") is not None


def _dist_port() -> int:
    # CLI tools use 35672-35682 (distribution port + 10000 .. + 10010): stay clear of both.
    while True:
        port = free_port()
        if not 35672 <= port <= 35682 and port + 10010 < 65535:
            return port


class LocalBroker(Broker):
    """A private RabbitMQ node run from the installed binary, torn down with its data.

    The node gets a unique name (``mqlab-<hex>@localhost``), a temporary directory holding its
    config, data (``RABBITMQ_MNESIA_BASE``), logs and Erlang cookie (``HOME``), and free
    loopback ports for AMQP, management and Erlang distribution. It ignores the system
    ``/etc/rabbitmq`` files (``RABBITMQ_CONF_ENV_FILE`` and ``RABBITMQ_CONFIG_FILE`` point into
    the directory), so it never clashes with a system broker on 5672.

    Raises:
        BrokerUnavailable: no ``rabbitmq-server`` binary is installed.
    """

    provider = "local"
    can_kill = True

    def __init__(self) -> None:
        server, ctl = _find("rabbitmq-server"), _find("rabbitmqctl")
        if server is None or ctl is None:
            raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)
        self.server, self.ctl = server, ctl
        self.dir = Path(tempfile.mkdtemp(prefix="mqlab-broker-"))
        reaper.register_dir(str(self.dir))
        self.node = f"mqlab-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port, self.management_port = free_port(), free_port()
        self.dist_port = _dist_port()
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"
        self.management_url = f"http://127.0.0.1:{self.management_port}"
        (self.dir / "home").mkdir()
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            f"collect_statistics_interval = {STATS_INTERVAL_MS}\n"
            "log.console = false\n"
        )
        # The management agent aggregates samples at the granularity of its retention policies
        # (default: every 5 s), which would make figures seconds old; sample every second.
        (self.dir / "advanced.config").write_text(
            "[{rabbitmq_management_agent, [{sample_retention_policies, ["
            "{global, [{605, 1}]}, {basic, [{605, 1}]}, {detailed, [{10, 1}]}]}]}].\n"
        )
        self._proc: GroupProcess | None = None

    @property
    def pid_file(self) -> Path:
        """Where the node writes its OS pid."""
        return self.dir / "rabbitmq.pid"

    @property
    def log_file(self) -> Path:
        """stdout/stderr of the server script."""
        return self.dir / "server.log"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            "HOME": str(d / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        """Boot the node (first time, or again after :meth:`kill`) and wait until ready.

        Raises:
            RuntimeError: the node exited during boot (the message quotes its log).
            TimeoutError: it did not become ready in 90 s.
        """
        if self._proc is not None and self._proc.alive():
            return
        self.pid_file.unlink(missing_ok=True)
        self._proc = GroupProcess(Command([self.server], self._env()), log_path=self.log_file)
        self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """``rabbitmqctl wait <pidfile>`` (RabbitMQ's own readiness check), then the ports.

        Raises:
            RuntimeError: the node exited during boot (the message quotes its log).
            TimeoutError: not ready within ``timeout`` seconds.
        """
        env = {**os.environ, **self._env()}
        wait_until(
            lambda: self.pid_file.exists() or not (self._proc and self._proc.alive()),
            timeout,
            what="the node's pid file",
        )
        result = subprocess.run(
            [self.ctl, "wait", "--timeout", str(int(timeout)), str(self.pid_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )
        if result.returncode != 0 or not (self._proc and self._proc.alive()):
            tail = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise RuntimeError(
                f"RabbitMQ node {self.node} failed to start: {result.stderr.strip()}\n{tail}"
            )
        super().wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL the node's whole process group (beam.smp and its helpers)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def close(self) -> None:
        """Kill the node and delete its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        reaper.unregister_dir(str(self.dir))


# -- Docker -----------------------------------------------------------------------------------


def docker_engine_available() -> bool:
    """Whether a Docker engine answers (not just the client being installed)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


class DockerBroker(Broker):
    """``rabbitmq:3-management`` in a container, via testcontainers-python.

    Host ports are bound explicitly so they survive :meth:`kill` / :meth:`start` (Docker assigns
    new random ports to a restarted container otherwise), and clients keep their URL.

    Raises:
        BrokerUnavailable: no Docker engine answers.
    """

    provider = "docker"
    can_kill = True
    image = "rabbitmq:3-management"

    def __init__(self) -> None:
        if not docker_engine_available():
            raise BrokerUnavailable("no Docker engine answers (is the daemon running?)")
        from testcontainers.rabbitmq import RabbitMqContainer

        self.amqp_port, self.management_port = free_port(), free_port()
        self.container = (
            RabbitMqContainer(self.image)
            .with_bind_ports(5672, self.amqp_port)
            .with_bind_ports(15672, self.management_port)
        )
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"
        self.management_url = f"http://127.0.0.1:{self.management_port}"
        self._started = False

    def start(self) -> None:
        """Start the container (or start the killed one again) and wait until ready."""
        if not self._started:
            self.container.start()
            self._started = True
        else:
            self.container.get_wrapped_container().start()
        self.wait_ready()

    def kill(self) -> None:
        """``docker kill`` (SIGKILL) the container, keeping its data."""
        self.container.get_wrapped_container().kill()

    def close(self) -> None:
        """Stop and remove the container."""
        if self._started:
            self.container.stop()


# -- external ---------------------------------------------------------------------------------


class ExternalBroker(Broker):
    """A broker somebody else runs, at ``AMQP_URL``; mqlab never kills or purges it wholesale.

    The management API is at ``MQLAB_MANAGEMENT_URL``, default ``http://<amqp host>:15672``.
    """

    provider = "external"
    can_kill = False

    def __init__(self, amqp_url: str | None = None) -> None:
        from shared import settings

        self.amqp_url = amqp_url or settings.load().amqp_url
        host = urlparse(self.amqp_url).hostname or "localhost"
        self.management_url = os.environ.get("MQLAB_MANAGEMENT_URL") or f"http://{host}:15672"

    def start(self) -> None:
        """Check the broker answers."""
        self.wait_ready(timeout=10)

    def kill(self) -> None:
        raise NotImplementedError("an external broker cannot be killed by mqlab")

    def close(self) -> None:
        """Nothing to tear down."""


def make_broker(kind: str | None = None) -> Broker:
    """Choose and construct (not start) a broker provider; see the module docstring.

    Raises:
        BrokerUnavailable: the provider cannot run here.
        ValueError: unknown ``kind``.
    """
    kind = (kind or os.environ.get("MQLAB_BROKER") or "auto").lower()
    if kind == "external":
        return ExternalBroker()
    if kind == "local":
        return LocalBroker()
    if kind == "docker":
        return DockerBroker()
    if kind != "auto":
        raise ValueError(f"MQLAB_BROKER must be auto, local, docker or external, not {kind!r}")
    if os.environ.get("AMQP_URL"):
        return ExternalBroker()
    if local_binary_available():
        return LocalBroker()
    if docker_engine_available():
        return DockerBroker()
    raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)


def wait_for_queue(
    broker: Broker,
    name: str,
    timeout: float,
    *,
    ready: int | None = None,
    fresh_after: float | None = None,
    **expect: int,
) -> QueueStats:
    """Poll until queue ``name`` reports ``ready`` messages and other ``expect``-ed figures.

    Parameters:
        broker: where to ask.
        name: the queue.
        timeout: deadline in seconds.
        ready: expected :attr:`QueueStats.ready` (ignored if ``None``).
        fresh_after: epoch seconds; only figures collected after this moment count, so a stale
            sample from before (an empty queue before the publish, say) cannot satisfy the wait.
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
        stats = broker.queue(name)
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
