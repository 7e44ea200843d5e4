"""A node only its owner uses: the ``mqlab broker up`` record and the private node's account.

* The record's directory must be this user's, mode 0700, not a symlink; otherwise every
  program refuses it in one line (and never falls back to some broker).
* A record is trusted only if its pid is this user's ``broker up`` process started when the
  record says: a stale record whose pid now belongs to another process is dropped, and
  ``broker down`` does not signal that process; a pid we may not inspect does not crash.
* A private node has its own administrator with a random password; guest/guest is refused, and
  printed URLs mask the password.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pika.exceptions
import psutil
import pytest

from shared import broker_up
from shared.exit_codes import ExitCode
from shared.impl import Command
from testbed.node import Node, mask_password
from testbed.process import wait_until
from tests.helpers import run_to_end


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TMPDIR for this test, in this process and for the programs it runs."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("AMQP_URL", raising=False)
    return tmp


def _record(state: dict[str, object]) -> Path:
    directory = broker_up.private_dir(create=True)
    assert directory is not None
    path = broker_up.state_file()
    path.write_text(json.dumps(state))
    return path


def _program_error(tmp: Path) -> str:
    """Run a program without AMQP_URL; MQLAB_PREFETCH=abc guarantees it never connects
    anywhere, even if the record were trusted (it fails on the record first, or on that)."""
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "raw_pika.new_task", "x"],
        env={**env, "TMPDIR": str(tmp), "MQLAB_PREFETCH": "abc"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("flaw", ["mode-0777", "mode-0770", "other-owner", "symlink"])
def test_a_record_directory_that_is_not_private_is_refused(tmpdir_env: Path, flaw: str) -> None:
    user_dir = tmpdir_env / f"mqlab-{os.getuid()}"
    if flaw == "symlink":
        elsewhere = tmpdir_env / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        user_dir.symlink_to(elsewhere)
        why = "symbolic link"
    else:
        user_dir.mkdir(mode=0o700)
        if flaw.startswith("mode-"):
            user_dir.chmod(int(flaw[5:], 8))
            why = f"{flaw[5:]}: others can write to it"
        else:
            if os.getuid() != 0:
                pytest.skip("needs root to give the directory to another user")
            os.chown(user_dir, 65534, 65534)
            why = "belongs to uid 65534"
    with pytest.raises(broker_up.RecordUnsafe, match=why):
        broker_up.read()
    line = _program_error(tmpdir_env)
    assert line.startswith("error: refusing to use the 'mqlab broker up' record") and why in line


def test_a_private_directory_without_a_record_is_fine(tmpdir_env: Path) -> None:
    """Negative control: the same checks pass on a directory of ours that only we can write
    to (the program then fails on MQLAB_PREFETCH, not on the record); one an older mqlab left
    at 0755 is closed to others (0700)."""
    user_dir = tmpdir_env / f"mqlab-{os.getuid()}"
    user_dir.mkdir(mode=0o700)
    user_dir.chmod(0o755)
    assert "MQLAB_PREFETCH" in _program_error(tmpdir_env)
    assert broker_up.read() is None
    assert stat.S_IMODE(user_dir.stat().st_mode) == 0o700


@pytest.fixture
def bystander() -> Iterator[psutil.Process]:
    """A process of this user that is not ``broker up`` (a pid a stale record could name)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _mqlab_down(tmp: Path) -> subprocess.CompletedProcess[str]:
    return run_to_end(Command([sys.executable, "-m", "lab.cli", "broker", "down"]), {})


@pytest.mark.timeout(60)
def test_a_stale_record_never_signals_a_reused_pid(
    tmpdir_env: Path, bystander: psutil.Process
) -> None:
    """The record names a live pid of ours, with its very start time (the worst case of pid
    reuse), but that process is not ``broker up``: the record is dropped, nothing signalled."""
    path = _record(
        {
            "pid": bystander.pid,
            "started": bystander.create_time(),
            "amqp_url": "amqp://x:y@127.0.0.1:1/%2F",
            "management_url": "http://127.0.0.1:1",
        }
    )
    result = _mqlab_down(tmpdir_env)
    assert result.returncode == 0 and "no broker" in result.stdout, result.stderr
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
    assert not path.exists()


@contextmanager
def _genuine_record(**extra: object) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line is ``... lab broker up``, recorded (with its start time and
    ``extra`` fields) as the running broker; killed afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "lab", "broker", "up"]
    )
    try:
        fake = psutil.Process(proc.pid)
        wait_until(lambda: "broker" in fake.cmdline(), 10, what="the fake broker up to start")
        _record(
            {
                "pid": proc.pid,
                "started": fake.create_time(),
                "amqp_url": "amqp://x:secret@127.0.0.1:1/%2F",
                "management_url": "http://127.0.0.1:1",
                **extra,
            }
        )
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(60)
def test_a_genuine_record_is_trusted_and_stopped(tmpdir_env: Path) -> None:
    """Negative control for the test above: a process whose command line is ``... lab broker
    up`` with the recorded start time is trusted, and ``broker down`` stops it."""
    with _genuine_record() as proc:
        assert broker_up.read() is not None
        result = _mqlab_down(tmpdir_env)
        assert result.returncode == 0, result.stderr
        assert "x:**@" in result.stdout and "secret" not in result.stdout
        wait_until(lambda: proc.poll() is not None, 10, what="the fake broker up to stop")


def test_a_pid_we_may_not_inspect_is_not_trusted(
    tmpdir_env: Path, bystander: psutil.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record({"pid": bystander.pid, "started": bystander.create_time(), "amqp_url": "amqp://x/"})

    def denied(pid: int) -> psutil.Process:
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", denied)
    assert broker_up.read() is None  # no PermissionError, no trust


def test_the_private_node_has_its_own_random_password(broker: Node) -> None:
    if broker.provider != "local":
        pytest.skip(f"a {broker.provider} node's account is not mqlab's to choose")
    url = pika.URLParameters(broker.amqp_url)
    password = url.credentials.password
    assert url.credentials.username != "guest" and len(password) >= 16
    assert password not in broker.describe() and password not in mask_password(broker.amqp_url)
    # Negative control: the URL's own account logs in; guest/guest does not.
    pika.BlockingConnection(url).close()
    guest = pika.URLParameters(broker.amqp_url)
    guest.credentials = pika.PlainCredentials("guest", "guest")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(guest)


@pytest.mark.broker  # `mqlab broker up --detach` starts a private node
@pytest.mark.timeout(60)
@pytest.mark.parametrize("cluster", [True, False], ids=["cluster-asked", "control-same-kind"])
def test_broker_up_of_another_kind_is_refused(tmpdir_env: Path, cluster: bool) -> None:
    """A single node is up; `mqlab broker up --cluster` said "already running" and exited 0,
    leaving the user on one node with MQLAB_QUEUE_TYPE=quorum (no replication, no node to
    lose). It is refused in one line, exit 64 (usage). Control: asking for the same kind again
    is the usual "already running", exit 0."""
    with _genuine_record(nodes=[]) as proc:
        argv = [sys.executable, "-m", "lab.cli", "broker", "up", "--detach"]
        result = run_to_end(Command([*argv, "--cluster"] if cluster else argv), {}, timeout=30)
        if cluster:
            assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "a single node is already running" in lines[0], lines
            assert "secret" not in result.stderr
        else:
            assert result.returncode == 0, result.stderr
            assert "already running" in result.stdout
        assert proc.poll() is None  # the running node is left alone


def _broker_up_processes(tmp: Path) -> list[psutil.Process]:
    """This user's ``lab.cli broker up`` processes (not ``--detach`` parents) run with TMPDIR
    ``tmp``: each one keeps a node."""
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        try:
            argv = proc.info["cmdline"] or []
            if proc.info["uids"].real != os.getuid() or argv[-2:] != ["broker", "up"]:
                continue
            if proc.environ().get("TMPDIR") == str(tmp):
                found.append(proc)
        except (psutil.Error, TypeError, IndexError):
            continue
    return found


@pytest.mark.broker
@pytest.mark.timeout(300)
@pytest.mark.parametrize("same_checkout", [True, False], ids=["same-record", "control-two-tmpdirs"])
def test_two_broker_ups_at_once_start_one_node(tmp_path: Path, same_checkout: bool) -> None:
    """Two ``mqlab broker up --detach`` started at the same moment both exited 0 and started two
    nodes; the record named one, so ``broker down`` left the other running. Now the second
    finds the lock taken, waits for the first one's node and says it is already running: one
    node, and ``broker down`` leaves none. Control: two TMPDIRs (two records) do give two nodes,
    so the count below can see a second one."""
    tmps = [tmp_path / "a", tmp_path / ("a" if same_checkout else "b")]
    for tmp in set(tmps):
        tmp.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    argv = [sys.executable, "-m", "lab.cli", "broker", "up", "--detach"]
    try:
        ups = [
            subprocess.Popen(argv, env={**env, "TMPDIR": str(t)}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for t in tmps
        ]  # fmt: skip
        results = [(p.wait(timeout=240), *p.communicate()) for p in ups]
        assert [code for code, _, _ in results] == [0, 0], results
        running = {p.pid for t in set(tmps) for p in _broker_up_processes(t)}
        assert len(running) == (1 if same_checkout else 2), results
        if same_checkout:
            assert any("already running" in out for _, out, _ in results), results
        for tmp in set(tmps):
            down = subprocess.run(
                [sys.executable, "-m", "lab.cli", "broker", "down"],
                env={**env, "TMPDIR": str(tmp)}, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            assert down.returncode == 0, down.stderr
        wait_until(
            lambda: not any(_broker_up_processes(t) for t in set(tmps)),
            60,
            what="every broker up to stop",
        )
    finally:
        for tmp in set(tmps):  # only the processes this test started (by their TMPDIR)
            for proc in _broker_up_processes(tmp):
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
