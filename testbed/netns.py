"""Private test hosts on one machine: Linux network namespaces joined by two bridges.

Each host is a network namespace with two veth links: one to a *cluster* bridge (the traffic
between hosts: Erlang distribution, epmd) and one to a *client* bridge, on which the root
namespace has an address too, so programs started normally reach every host. Cutting a host's
cluster link (its bridge end set down: there is no netem or iptables on the test machine)
partitions it from the others while its clients still reach it; setting it up heals.

Addresses are private, ``10.213.K.i/24`` (cluster) and ``10.213.C.i/24`` (client; the root
namespace is ``.254``); nothing is routed anywhere else. ``K`` and ``C`` are chosen per network
by creating the bridges ``mqlab-br<K>`` and ``mqlab-br<C>``: creating a link whose name exists
fails, so two test processes never share a subnet. Every namespace, veth pair and bridge is
registered with :mod:`testbed.reaper`, so a killed test process leaves none behind.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass

from testbed import reaper

PREFIX = "10.213"
"""The private /16 the networks take their two /24 subnets from."""

ROOT_HOST = 254
"""The root namespace's last octet on the client bridge."""


class NetnsUnavailable(RuntimeError):
    """This machine (or user) cannot create network namespaces; the message says why."""


def why_unavailable() -> str | None:
    """``None`` where namespaces, veth pairs and bridges can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to create network namespaces"
    if os.geteuid() != 0:
        return "network namespaces need root (the partition tests run as root in CI)"
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip ARGS`` (in namespace ``netns``, with ``-n``); return its output.

    Raises:
        RuntimeError: it failed (the message quotes its stderr).
    """
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Host:
    """One test host.

    Attributes:
        index: 1-based.
        netns: the namespace's name.
        cluster_ip: its address on the cluster bridge.
        client_ip: its address on the client bridge (reachable from the root namespace).
        cluster_link: the root-namespace end of its cluster veth (down = partitioned).
    """

    index: int
    netns: str
    cluster_ip: str
    client_ip: str
    cluster_link: str

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """Runs a command inside this host: ``ip netns exec <netns>``."""
        return ("ip", "netns", "exec", self.netns)


class Network:
    """``size`` hosts on a cluster bridge and a client bridge (see the module docstring);
    created on construction, removed by :meth:`close`.

    Raises:
        NetnsUnavailable: :func:`why_unavailable` says no.
        RuntimeError: an ``ip`` command failed (what was made is removed again).
    """

    def __init__(self, size: int) -> None:
        reason = why_unavailable()
        if reason:
            raise NetnsUnavailable(reason)
        self.bridges: list[str] = []
        self.links: list[str] = []  # the root-namespace ends of the veth pairs
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        try:
            cluster_net = self._bridge()
            client_net = self._bridge()
            ip(
                "addr",
                "add",
                f"{PREFIX}.{client_net}.{ROOT_HOST}/24",
                "dev",
                f"mqlab-br{client_net}",
            )
            for i in range(1, size + 1):
                self.hosts.append(self._host(i, cluster_net, client_net))
        except BaseException:
            self.close()
            raise

    def _bridge(self) -> int:
        """Create a bridge with a free subnet octet (its name holds it); the octet."""
        for octet in random.sample(range(1, 254), 253):
            name = f"mqlab-br{octet}"
            taken = subprocess.run(
                ["ip", "link", "add", name, "type", "bridge"], capture_output=True, check=False
            ).returncode
            if taken != 0:
                continue  # another network has it (or the name is in use): next octet
            reaper.register_link(name)
            self.bridges.append(name)
            ip("link", "set", name, "up")
            return octet
        raise RuntimeError(f"no free subnet left in {PREFIX}.0.0/16")

    def _host(self, index: int, cluster_net: int, client_net: int) -> Host:
        netns = f"mqlab-{cluster_net}-{index}"
        ip("netns", "add", netns)
        reaper.register_netns(netns)
        self.namespaces.append(netns)
        host = Host(
            index=index,
            netns=netns,
            cluster_ip=f"{PREFIX}.{cluster_net}.{index}",
            client_ip=f"{PREFIX}.{client_net}.{index}",
            cluster_link=f"mqk{cluster_net}-{index}",
        )
        ip("link", "set", "lo", "up", netns=netns)
        for outer, inner, net, address in (
            (host.cluster_link, "cluster0", cluster_net, host.cluster_ip),
            (f"mqc{client_net}-{index}", "client0", client_net, host.client_ip),
        ):
            ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns)
            reaper.register_link(outer)
            self.links.append(outer)
            ip("link", "set", outer, "master", f"mqlab-br{net}", "up")
            ip("addr", "add", f"{address}/24", "dev", inner, netns=netns)
            ip("link", "set", inner, "up", netns=netns)
        return host

    def cut(self, host: Host) -> None:
        """Partition ``host`` from the other hosts (its cluster link down); clients still
        reach it."""
        ip("link", "set", host.cluster_link, "down")

    def heal(self, host: Host) -> None:
        """Join ``host`` to the other hosts again (its cluster link up)."""
        ip("link", "set", host.cluster_link, "up")

    def close(self) -> None:
        """Delete every namespace (killing what still runs in it), veth pair and bridge;
        idempotent. A veth pair is deleted from its root end as well: a namespace without
        processes lives on while a socket of it (an orphaned TCP connection still sending its
        FIN) holds it, and its veth ends with it."""
        for netns in self.namespaces:
            reaper.delete_netns(netns)
            reaper.unregister_netns(netns)
        for name in [*self.links, *self.bridges]:
            reaper.delete_link(name)
            reaper.unregister_link(name)
        self.namespaces, self.hosts, self.links, self.bridges = [], [], [], []
