"""A watchdog process that kills what we started if we die without cleaning up.

Brokers and workers are started in their own sessions (process groups) so a test can SIGKILL a
whole worker (Celery's main process and its pool children together). The price is that a
Ctrl+C or SIGKILL of the parent would leave them running. The reaper closes that gap: the
parent keeps a pipe to it and registers each process group (``+PGID``), scratch directory
(``+dir PATH``), network namespace (``+netns NAME``) and network link (``+link NAME``: a bridge,
a veth pair's end);
when the pipe reaches end-of-file, whatever the cause of the parent's death, the reaper SIGKILLs
every registered group, then every process left in a registered namespace (an ``epmd`` a node
daemonised), deletes the namespaces (which takes their veth pairs with them) and links, and
removes every registered directory.

Run as ``python -m testbed.reaper``; use it through :func:`register` / :func:`unregister`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading

_lock = threading.Lock()
_proc: subprocess.Popen[str] | None = None


def _send(line: str) -> None:
    global _proc
    with _lock:
        if _proc is None or _proc.poll() is not None:
            _proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.reaper"],
                stdin=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        assert _proc.stdin is not None
        _proc.stdin.write(line + "\n")
        _proc.stdin.flush()


def register(pgid: int) -> None:
    """Kill process group ``pgid`` with SIGKILL if this process dies first."""
    _send(f"+{pgid}")


def unregister(pgid: int) -> None:
    """Forget process group ``pgid`` (it was stopped normally)."""
    _send(f"-{pgid}")


def register_dir(path: str) -> None:
    """Remove directory ``path`` if this process dies first."""
    _send(f"+dir {path}")


def unregister_dir(path: str) -> None:
    """Forget directory ``path``."""
    _send(f"-dir {path}")


def register_netns(name: str) -> None:
    """Delete network namespace ``name`` (after killing what runs in it) if this process dies
    first."""
    _send(f"+netns {name}")


def unregister_netns(name: str) -> None:
    """Forget network namespace ``name``."""
    _send(f"-netns {name}")


def register_link(name: str) -> None:
    """Delete network link ``name`` (``ip link del``) if this process dies first."""
    _send(f"+link {name}")


def unregister_link(name: str) -> None:
    """Forget network link ``name``."""
    _send(f"-link {name}")


def delete_netns(name: str) -> None:
    """SIGKILL every process in network namespace ``name``, then delete it (its veth ends go
    with it); quiet if it is gone already."""
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def delete_link(name: str) -> None:
    """``ip link del name``; quiet if it is gone already."""
    subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    dirs: set[str] = set()
    namespaces: set[str] = set()
    links: set[str] = set()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("+dir "):
            dirs.add(line[5:])
        elif line.startswith("-dir "):
            dirs.discard(line[5:])
        elif line.startswith("+netns "):
            namespaces.add(line[7:])
        elif line.startswith("-netns "):
            namespaces.discard(line[7:])
        elif line.startswith("+link "):
            links.add(line[6:])
        elif line.startswith("-link "):
            links.discard(line[6:])
        elif line.startswith("+"):
            groups.add(int(line[1:]))
        elif line.startswith("-"):
            groups.discard(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for name in namespaces:
        delete_netns(name)
    for name in links:
        delete_link(name)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    _main()
