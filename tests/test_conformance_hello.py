"""Hello world (tutorial 1): what is sent is printed by the receiver, byte for byte, and Ctrl+C
stops the receiver cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

from shared.exit_codes import ExitCode
from shared.impl import Implementation
from testbed.node import Node
from testbed.process import GroupProcess, wait_until

TEXTS = ["Hello World!", "héllo wörld ✓ 你好 🐇", ""]


def run(
    argv: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion with our environment plus ``env``."""
    return subprocess.run(
        argv,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **env},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def test_hello_roundtrip(broker: Node, impl: Implementation, tmp_path: Path) -> None:
    with GroupProcess(impl.receive_command(), log_path=tmp_path / "receive.log") as receiver:
        wait_until(
            lambda: (
                (
                    (q := broker.management.queue(impl.hello_queue())) is not None
                    and q.consumers >= 1
                )
                or not receiver.alive()
            ),
            30,
            what="the receiver's consumer",
        )
        assert receiver.alive(), receiver.output()

        for text in TEXTS:
            send = impl.send_command(text)
            result = run(list(send.argv), dict(send.env))
            assert result.returncode == 0, result.stderr
            assert f" [x] Sent {text}" in result.stdout

        def received(text: str) -> bool:
            lines = receiver.output().splitlines()
            return any(line.endswith(f" [x] Received {text}") for line in lines)

        for text in TEXTS:
            wait_until(partial(received, text), 30, what=f"the receiver to print {text!r}")

        # Ctrl+C, as a terminal sends it (to the foreground group): a clean stop, no error line
        # (celery_impl.receive reported Celery's exit 1 after Ctrl+C as an error, exit 70).
        receiver.signal(signal.SIGINT)
        code = receiver.wait(timeout=30)
        output = receiver.output()
        assert code == ExitCode.OK, f"exit {code}\n{output}"  # pika's receive exited 130
        assert "error:" not in output and "Traceback" not in output, output
