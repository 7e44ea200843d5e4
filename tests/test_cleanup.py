"""Nothing outlives its owner: Ctrl+C or SIGKILL of a program that started a private broker
node and a worker leaves neither running (the reaper, :mod:`testbed.reaper`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from testbed.local_node import local_binary_available
from testbed.process import wait_until

OWNER = textwrap.dedent(
    """
    import json, sys
    from testbed.provider import provision
    from shared.impl import WorkerSpec
    from testbed.process import GroupProcess
    from testbed import registry
    impl = registry.get("pika")
    with provision("local") as broker:
        spec = WorkerSpec(name="w", amqp_url=broker.amqp_url)
        with GroupProcess(impl.worker_command(spec), log_path=str(broker.dir / "w.log")) as w:
            beam = int(broker.pid_file.read_text())
            print(json.dumps({"pids": [beam, *w.pids()], "dir": str(broker.dir)}), flush=True)
            sys.stdin.read()
    """
)


CLUSTER_OWNER = textwrap.dedent(
    """
    import json, sys
    from testbed.provider import provision
    with provision("cluster") as cluster:
        pids = [int(n.pid_file.read_text()) for n in cluster.nodes]
        print(json.dumps({"pids": pids, "dirs": [str(n.dir) for n in cluster.nodes]}), flush=True)
        sys.stdin.read()
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.broker  # starts a private node itself
@pytest.mark.skipif(not local_binary_available(), reason="needs the rabbitmq-server binary")
@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_owner_death_leaves_no_node_or_worker(sig: int) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MQLAB_BROKER": "local"},
    )
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline())
    pids: list[int] = started["pids"]
    assert len(pids) >= 2 and not any(_gone(p) for p in pids)  # they were running

    owner.send_signal(sig)
    owner.wait(timeout=30)
    wait_until(lambda: all(_gone(p) for p in pids), 30, what="node and worker to be gone")
    wait_until(lambda: not os.path.exists(started["dir"]), 30, what="the data dir to be removed")


@pytest.mark.broker  # starts a private cluster itself
@pytest.mark.skipif(not local_binary_available(), reason="needs the rabbitmq-server binary")
@pytest.mark.timeout(240)
def test_owner_death_leaves_no_cluster_node() -> None:
    """SIGKILL of the program that owns a 3-node cluster leaves none of its nodes or data."""
    owner = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline())
    pids: list[int] = started["pids"]
    assert len(pids) == 3 and not any(_gone(p) for p in pids)  # they were running

    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    wait_until(lambda: all(_gone(p) for p in pids), 30, what="every node to be gone")
    wait_until(
        lambda: not any(os.path.exists(d) for d in started["dirs"]),
        30,
        what="the data dirs to be removed",
    )
