"""Program arguments: a value a program cannot honour (a negative prefetch or count, a count
too large to hold, a body that is not valid text in the terminal's encoding) is refused in one
line or sent as given, never read as something else and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.exit_codes import ExitCode
from shared.impl import Command, Implementation, WorkerSpec
from testbed.node import Node
from testbed.process import GroupProcess, wait_until
from tests.helpers import IMPLEMENTATIONS, assert_one_line_error, each_implementation, run_to_end

UNREACHABLE = {"AMQP_URL": "amqp://u:p@127.0.0.1:1/%2F", "MQLAB_CONNECT_TIMEOUT": "2"}
"""A broker nobody listens on: a program that gets past its argument checks fails to connect."""


def test_pika_worker_refuses_negative_prefetch(broker: Node, tmp_path: Path) -> None:
    """raw_pika read prefetch -1 as "unlimited" (no basic.qos) without a word; the Dramatiq
    worker refuses it."""
    impl = IMPLEMENTATIONS["pika"]
    spec = WorkerSpec(name="w", amqp_url=broker.amqp_url, prefetch=-1)
    with GroupProcess(impl.worker_command(spec), log_path=tmp_path / "w.log") as worker:
        code = worker.wait(timeout=15)
        output = worker.output()
    if code is None:
        pytest.fail("worker accepted --prefetch -1 and ran as unlimited")
    # The spec carries the prefetch as MQLAB_PREFETCH too, which is read first: a bad setting.
    assert code == ExitCode.CONFIG and "Traceback" not in output, output


def test_pika_new_task_refuses_negative_count(broker: Node) -> None:
    """`--count -5` published nothing and exited 0; the Dramatiq producer refuses it."""
    impl = IMPLEMENTATIONS["pika"]
    result = run_to_end(impl.new_task_command(["x"], count=-5), {})
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_pika_new_task_with_non_utf8_argument(broker: Node) -> None:
    """A body from a Latin-1 terminal: argv holds a lone surrogate, body.encode() raised
    UnicodeEncodeError (traceback). The Dramatiq producer sends it."""
    impl = IMPLEMENTATIONS["pika"]
    command = impl.new_task_command([os.fsdecode(b"caf\xe9")])
    result = subprocess.run(
        [os.fsencode(a) for a in command.argv], capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.timeout(60)
@each_implementation()
def test_new_task_refuses_a_count_it_cannot_hold(impl: Implementation) -> None:
    """`new_task --count 10000000000` (a typo) built ten billion numbered bodies in memory
    before the first publish: no output, memory growing until the OOM killer. Refused in one
    line at once. Control: a small count gets past the check to the (unreachable) broker."""
    result = run_to_end(impl.new_task_command(["x"], count=10**10), UNREACHABLE, timeout=15)
    assert "--count must be 0 to" in assert_one_line_error(result.returncode, result.stderr)
    result = run_to_end(impl.new_task_command(["x"], count=2), UNREACHABLE, timeout=15)
    assert "cannot connect" in assert_one_line_error(result.returncode, result.stderr)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["existing-file", "unwritable", "control-writable-out"])
def test_compare_out_that_cannot_be_written_is_one_line(tmp_path: Path, where: str) -> None:
    """`mqlab compare --out` to an existing file or a path that cannot be created ended in a
    traceback after the run had started. It is refused before anything runs, one line, exit 64.
    Control: a writable --out gets past the check (to the unreachable broker)."""
    target = tmp_path / "a-file"
    target.write_text("x")
    out = {
        "existing-file": str(target),
        "unwritable": "/proc/mqlab/x",
        "control-writable-out": str(tmp_path / "r"),
    }[where]
    argv = [sys.executable, "-m", "lab.cli", "compare", "--quick", "--impl", "pika",
            "--amqp-url", UNREACHABLE["AMQP_URL"], "--management-url", "http://127.0.0.1:1",
            "--out", out]  # fmt: skip
    if where == "control-writable-out":  # a writable --out: past the check, to its run plan
        with GroupProcess(Command(argv, UNREACHABLE), log_path=tmp_path / "compare.log") as proc:
            planned = lambda: "runs over" in proc.output() or not proc.alive()  # noqa: E731
            wait_until(planned, 50, interval=0.1, what="compare to print its run plan")
            output = proc.output()
        assert "runs over" in output and "cannot write the report" not in output, output
        return
    result = run_to_end(Command(argv), UNREACHABLE, timeout=50)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "--out" in assert_one_line_error(result.returncode, result.stderr)
