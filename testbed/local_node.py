"""A private RabbitMQ node run from the installed ``rabbitmq-server`` binary.

Its own node name, data directory, Erlang cookie (``HOME``), loopback-only AMQP, management and
distribution ports, a ``collect_statistics_interval`` of 250 ms and 1 s sample retention
granularity, so management figures sampled during a test are at most about a second old
(RabbitMQ docs, "Management Plugin": statistics interval and sample retention policies).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from shared.errors import BrokerUnavailable
from shared.impl import Command
from testbed import reaper
from testbed.node import Node, free_port
from testbed.process import GroupProcess, wait_until

STATS_INTERVAL_MS = 250
"""``collect_statistics_interval`` of private nodes, milliseconds (RabbitMQ default: 5000)."""

HOW_TO_GET_RABBITMQ = (
    "no RabbitMQ available: install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server; "
    "macOS: brew install rabbitmq), or start a Docker engine, or set AMQP_URL to a broker you "
    "run (MQLAB_BROKER=external)"
)


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


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _listen_port() -> int:
    """A free loopback port *below* the ephemeral range, for the node to listen on.

    A port from the ephemeral range (what binding port 0 gives) is free again while the node is
    down, and a client's outgoing connection can take it as its own local port; the node then
    cannot listen there when it starts again (``eaddrinuse``). Below the range only a program
    that binds it on purpose can. Clear of the CLI tools' 35672-35682 as well.
    """
    low = _ephemeral_range()[0]
    for _ in range(1000):
        port = random.randint(20000, max(20001, low - 20))
        if 35672 <= port <= 35682 + 10:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()  # no luck below the range: fall back to an ephemeral one


def _dist_port() -> int:
    # CLI tools use 35672-35682 (distribution port + 10000 .. + 10010): stay clear of both.
    while True:
        port = _listen_port()
        if not 35672 <= port <= 35682 and port + 10010 < 65535:
            return port


class LocalNode(Node):
    """A private RabbitMQ node run from the installed binary, torn down with its data.

    The node gets a unique name (``mqlab-<hex>@localhost``), a temporary directory holding its
    config, data (``RABBITMQ_MNESIA_BASE``), logs and Erlang cookie (``HOME``), and free
    loopback ports for AMQP, management and Erlang distribution. It ignores the system
    ``/etc/rabbitmq`` files (``RABBITMQ_CONF_ENV_FILE`` and ``RABBITMQ_CONFIG_FILE`` point into
    the directory), so it never clashes with a system broker on 5672.

    Parameters:
        name: the node name's first part (default ``mqlab-<hex>``); the host is ``localhost``.
        cookie: the Erlang cookie to share with other nodes (the nodes of a cluster must have
            one cookie: RabbitMQ docs, "Clustering Guide: Erlang cookie"); default: the node
            makes its own.
        password: the password of its administrator ``mqlab`` (the nodes of a cluster share
            one: joining a cluster replaces a node's users with the cluster's); default: a
            random one.
        extra_config: further ``rabbitmq.conf`` lines.
        host: the node name's host part (default ``localhost``); it must resolve to the node's
            address for its peers (a node in a network namespace: :mod:`testbed.netns_cluster`).
        listen_ip: the address AMQP and the management API listen on and clients use
            (default ``127.0.0.1``).
        rabbit_env: extra settings of the ``rabbit`` application, written into
            ``advanced.config`` as Erlang terms (e.g. ``{"consumer_timeout": 2000,
            "channel_tick_interval": 250}``: values are written as they are, so strings must be
            valid Erlang).

    Raises:
        BrokerUnavailable: no ``rabbitmq-server`` binary is installed.
    """

    provider = "local"
    can_kill = True
    prefix: tuple[str, ...] = ()
    """What every command of this node (server, CLI) runs under, e.g. ``ip netns exec NS``."""

    def __init__(
        self,
        rabbit_env: Mapping[str, int | str] | None = None,
        *,
        name: str | None = None,
        cookie: str | None = None,
        password: str | None = None,
        extra_config: str = "",
        host: str = "localhost",
        listen_ip: str = "127.0.0.1",
    ) -> None:
        server, ctl = _find("rabbitmq-server"), _find("rabbitmqctl")
        if server is None or ctl is None:
            raise BrokerUnavailable(HOW_TO_GET_RABBITMQ)
        self.server, self.ctl_path = server, ctl
        self.dir = Path(tempfile.mkdtemp(prefix="mqlab-broker-"))
        reaper.register_dir(str(self.dir))
        self.node = f"{name or 'mqlab-' + uuid.uuid4().hex[:8]}@{host}"
        self.amqp_port, self.management_port = _listen_port(), _listen_port()
        self.dist_port = _dist_port()
        # Its own administrator with a random password instead of guest/guest (which any local
        # user could use): RabbitMQ creates default_user on first boot and no guest then
        # (RabbitMQ docs, "Access Control": default user). Printed URLs mask it (mask_password).
        self.user, self.password = "mqlab", password or secrets.token_urlsafe(18)
        self.amqp_url = f"amqp://{self.user}:{self.password}@{listen_ip}:{self.amqp_port}/%2F"
        self.management_url = f"http://{listen_ip}:{self.management_port}"
        (self.dir / "home").mkdir()
        if cookie is not None:
            cookie_file = self.dir / "home" / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)  # Erlang refuses a cookie file others can read
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {listen_ip}:{self.amqp_port}\n"
            f"management.tcp.ip = {listen_ip}\n"
            f"management.tcp.port = {self.management_port}\n"
            f"collect_statistics_interval = {STATS_INTERVAL_MS}\n"
            "log.console = false\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "default_user_tags.administrator = true\n" + extra_config
        )
        (self.dir / "rabbitmq.conf").chmod(0o600)
        # The management agent aggregates samples at the granularity of its retention policies
        # (default: every 5 s), which would make figures seconds old; sample every second.
        rabbit = ", ".join(f"{{{key}, {value}}}" for key, value in (rabbit_env or {}).items())
        (self.dir / "advanced.config").write_text(
            f"[{{rabbit, [{rabbit}]}}, "
            "{rabbitmq_management_agent, [{sample_retention_policies, ["
            "{global, [{605, 1}]}, {basic, [{605, 1}]}, {detailed, [{10, 1}]}]}]}].\n"
        )
        self._proc: GroupProcess | None = None
        self._boot_offset = 0  # where this boot's output starts in log_file (it is appended to)

    @property
    def pid_file(self) -> Path:
        """Where the node writes its OS pid."""
        return self.dir / "rabbitmq.pid"

    @property
    def broker_log(self) -> Path:
        """RabbitMQ's own log of this node (``RABBITMQ_LOG_BASE/<node>.log``)."""
        return self.dir / "log" / f"{self.node}.log"

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
            "ERL_CRASH_DUMP": str(d / "log" / "erl_crash.dump"),  # not the caller's cwd
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        """Boot the node (first time, or again after :meth:`kill`) and wait until ready.

        Raises:
            RuntimeError: the node exited during boot (the message quotes its log).
            TimeoutError: it did not become ready in 90 s.
        """
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the server process (first time, or again after :meth:`kill`), without waiting;
        a no-op while it runs."""
        if self._proc is not None and self._proc.alive():
            return
        self.pid_file.unlink(missing_ok=True)
        self._boot_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._proc = GroupProcess(
            Command([*self.prefix, self.server], self._env()), log_path=self.log_file
        )

    def alive(self) -> bool:
        """Whether the node's process is running (it may still be booting)."""
        return self._proc is not None and self._proc.alive()

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <this node> ARGS`` with this node's cookie; never raises on a
        non-zero exit (check ``returncode``).

        Raises:
            subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
        """
        return subprocess.run(
            [*self.prefix, self.ctl_path, "-n", self.node, *args],
            env={**os.environ, **self._env()},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the node serves: it has written its pid file (this boot's: :meth:`launch`
        removes the last one), its AMQP port accepts connections and its management API answers
        (``/api/overview``), polled from here every 0.2 s while its process runs.

        No ``rabbitmqctl wait``: every CLI call boots an Erlang VM of its own (about 1.3 s of
        CPU, 5-10 s of wall time on the loaded 2-core machine), paid at each of the suite's node
        boots. The poll is as strict: RabbitMQ runs its core boot steps (Mnesia, recovery), then
        starts its plugins, the management API among them, and only then the client listeners
        ("Ready to start client connection listeners", RabbitMQ 3.10 ``rabbit.erl``, postlaunch
        phase), so an accepting AMQP port of this boot is a booted node.

        Raises:
            RuntimeError: the node exited during boot, or printed ``BOOT FAILED`` (RabbitMQ's
                ``rabbit`` boot error, then ``exit``); the message quotes this boot's output.
            TimeoutError: not ready within ``timeout`` seconds.
        """

        def boot_output() -> str:  # what the node printed since this boot's launch
            try:
                with self.log_file.open("rb") as log:
                    log.seek(self._boot_offset)
                    return log.read().decode(errors="replace")
            except FileNotFoundError:
                return ""

        def served() -> bool:
            boot = boot_output()
            # A failed boot prints BOOT FAILED and its reason; its VM may take a while to halt
            # (seen: a launcher still alive after incompatible_feature_flags).
            if not (self._proc and self._proc.alive()) or "BOOT FAILED" in boot:
                at = boot.find("BOOT FAILED")  # the reason follows it; else the output's tail
                quoted = boot[at : at + 2000] if at >= 0 else boot[-2000:]
                raise RuntimeError(f"RabbitMQ node {self.node} failed to start:\n{quoted}")
            # this boot's pid file (launch removed the last one's), then the ports
            return self.pid_file.exists() and self.amqp_accepts() and self.management.answers()

        wait_until(served, timeout, interval=0.2, what=f"RabbitMQ node {self.node} to serve")

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <node> <args>`` against this node; return its output.

        Raises:
            RuntimeError: it failed (the message quotes its stderr).
        """
        result = subprocess.run(
            [*self.prefix, self.ctl_path, "-n", self.node, "-q", *args],
            env={**os.environ, **self._env()},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def sync_metadata(self) -> None:
        """Write Mnesia's log (queue definitions) and Ra's directory of quorum queue members
        (``ra_directory_reverse``, auto-saved every 500 ms) to disk now, through
        ``rabbitmqctl eval`` (about a second: longer than that auto-save interval anyway);
        see :meth:`Node.sync_metadata`.

        Raises:
            RuntimeError: rabbitmqctl failed (the message quotes its stderr).
        """
        self.rabbitmqctl("eval", "mnesia:sync_log(), catch dets:sync(ra_directory_reverse), ok.")

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
