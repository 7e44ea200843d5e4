"""What every program's entry point shares: one-line errors, honest exit codes, and the
command-line options the three implementations have in common."""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from shared import settings
from shared.contract import Published
from shared.errors import BadSetting, MqlabError
from shared.exit_codes import ExitCode

MAX_COUNT = 1_000_000
"""The most messages one ``--count`` publishes: each body and what was sent stay in memory
until the end, so ``--count 1000000000`` (a typo) would exhaust memory before the first publish."""


def run(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with its code.

    A :class:`~shared.errors.MqlabError` becomes ``error: <message>`` on stderr and its
    ``exit_code``; Ctrl+C exits with 130 without a traceback (:mod:`shared.exit_codes`).
    Output that the terminal's encoding cannot show is escaped, never an error
    (:func:`tolerant_output`).
    """
    tolerant_output()
    with one_line_errors():
        code = main()
    sys.exit(code or 0)


def tolerant_output() -> None:
    """Escape what stdout and stderr cannot encode (``errors="backslashreplace"``) instead of
    raising ``UnicodeEncodeError``: a message body a worker prints (`` [x] Received ...``)
    must not end the worker, or fail its task, when stdout is not UTF-8 (``LANG=C``, a pipe
    with ``PYTHONIOENCODING=ascii``). A forked child (Celery's pool) inherits the streams."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn an :class:`~shared.errors.MqlabError` raised in the block into ``error: <message>``
    on stderr and an exit with its code; Ctrl+C into exit code 130.

    For code that runs at import time, before any ``main`` (a framework's app or broker built
    when its module is imported, as ``celery -A`` and ``dramatiq`` require).
    """
    try:
        yield
    except MqlabError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``error: <message> (see <prog> --help)`` and
    :attr:`~shared.exit_codes.ExitCode.USAGE` (argparse prints the whole usage first and
    exits 2)."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(ExitCode.USAGE)


MAX_SLOWDOWN = 1000.0
"""The largest ``--slowdown`` / ``MQLAB_SLOWDOWN`` (the same bound as the setting)."""


def buffer_stdout() -> None:
    """Make ``print`` to stdout cheap for a worker's per-message lines: block-buffered, even
    under ``PYTHONUNBUFFERED`` (which the tests and the lab set), with the same encoding and
    error handling. The worker flushes it itself (the pika consumer every 0.2 s and at exit).
    """
    if not isinstance(sys.stdout, io.TextIOWrapper):
        return
    sys.stdout.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(sys.stdout.fileno(), "w", closefd=False)),
        encoding=sys.stdout.encoding,
        errors=sys.stdout.errors,
        line_buffering=False,
    )


def help_text(docstring: str, width: int = 78) -> str:
    """A program's docstring as ``--help`` text for users, ``width`` columns wide.

    The reStructuredText markup goes (````x````, ``:mod:`x```, a trailing ``::``); indented
    lines (examples, commands) stay lines of their own, listed as they are; bullet points
    (``* ``) and other paragraphs are wrapped to ``width``.
    """
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", docstring)
    text = re.sub(r"``([^`]+)``", r"\1", text).replace("::\n", ":\n")
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.splitlines()
        if all(line.startswith("    ") for line in lines):  # examples: one per line
            out.append(_examples([line[4:] for line in lines], width))
            continue
        items: list[str] = []
        for line in lines:
            if line.startswith("* ") or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        out.append(
            "\n".join(
                textwrap.fill(item, width, subsequent_indent="  " if item[:2] == "* " else "")
                for item in items
            )
        )
    return "\n\n".join(out)


def _examples(lines: list[str], width: int) -> str:
    """The example lines of :func:`help_text`, indented, their ``# comments`` aligned as
    closely as fits ``width``; a comment that still does not fit goes on the next line."""
    split = [(c.rstrip(), "#" + t if h else "") for c, h, t in (x.partition("  #") for x in lines)]
    column = max(len(c) for c, t in split if t) + 2 if any(t for _c, t in split) else 0
    out = []
    for command, comment in split:
        if not comment:
            out.append(f"  {command}")
        elif 2 + column + len(comment) <= width:
            out.append(f"  {command.ljust(column)}{comment}")
        elif 2 + len(command) + 2 + len(comment) <= width:
            out.append(f"  {command}  {comment}")
        else:
            out.append(f"  {command}\n      {comment}")
    return "\n".join(out)


def worker_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every worker takes.

    ``--concurrency N`` (worker slots: tasks run at once; default ``MQLAB_CONCURRENCY``),
    ``--prefetch N`` (per slot, 0 = unlimited; default ``MQLAB_PREFETCH``), ``--slowdown F``
    (default ``MQLAB_SLOWDOWN``) and ``--name W`` (default ``MQLAB_WORKER_NAME``). Call
    :func:`parse_worker_args` to parse and check them.
    """
    s = settings.load()
    parser = Parser(
        prog=prog,
        description=help_text(description or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=s.concurrency,
        help="worker slots: tasks this worker runs at the same time",
    )
    parser.add_argument(
        "--prefetch", type=int, default=s.prefetch, help="messages held per slot; 0 = unlimited"
    )
    parser.add_argument("--slowdown", type=float, default=s.slowdown, help="work-time factor")
    parser.add_argument("--name", default=s.worker_name, help="name in the journal")
    return parser


def parse_worker_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse ``sys.argv``; a prefetch outside 0..65535 or a slowdown that is not a number from
    0 to :data:`MAX_SLOWDOWN` (``inf``, ``nan``, ``2000``) is a usage error naming the option
    (:attr:`~shared.exit_codes.ExitCode.USAGE`)."""
    args = parser.parse_args()
    problem = worker_option_problem(args.prefetch, args.slowdown)
    if problem:
        parser.error(problem)
    if not 1 <= args.concurrency <= 1024:
        parser.error(f"--concurrency {args.concurrency}: must be 1 to 1024")
    check_journal(settings.load().journal)
    return args


def check_journal(path: str | None) -> None:
    """Check once, at a worker's start, that the journal ``path`` (``MQLAB_JOURNAL``) can be
    written: its directory exists and is writable, and it is not a directory itself. Without
    this, the first task failed instead (the pika worker died, the Celery worker parked every
    message, Dramatiq ran them without a row).

    Raises:
        BadSetting: it cannot (one line naming ``MQLAB_JOURNAL``).
    """
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    why = None
    if not os.path.isdir(directory):
        why = f"its directory {directory} does not exist"
    elif os.path.isdir(path):
        why = "it is a directory"
    elif not os.access(directory, os.W_OK | os.X_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK)
    ):
        why = "it cannot be written"
    if why:
        raise BadSetting(f"MQLAB_JOURNAL={path!r}: {why}")


def total_prefetch(prefetch: int, concurrency: int) -> int:
    """The ``basic.qos`` prefetch count of a worker with ``concurrency`` slots holding
    ``prefetch`` messages each: ``prefetch x concurrency``, at most 65535 (the field is 16 bits);
    ``0`` (unlimited) stays ``0``."""
    return min(prefetch * concurrency, 65535)


def worker_option_problem(prefetch: int, slowdown: float) -> str | None:
    """What is wrong with a worker's ``--prefetch`` / ``--slowdown`` (named as the options the
    user gave), or ``None``: prefetch outside 0..65535, slowdown not a number from 0 to
    :data:`MAX_SLOWDOWN`."""
    if not 0 <= prefetch <= 65535:
        # basic.qos prefetch-count is a 16-bit field (AMQP 0-9-1); 0 means no limit.
        return f"--prefetch {prefetch}: must be 0 (unlimited) to 65535"
    if not (math.isfinite(slowdown) and 0 <= slowdown <= MAX_SLOWDOWN):
        return f"--slowdown {slowdown}: must be a number from 0 to {MAX_SLOWDOWN:g}"
    return None


def new_task_bodies(prog: str, description: str | None) -> list[str]:
    """The bodies a ``new_task`` program publishes, from its command line ``[body...] [--count
    N]``: the text (default "Hello World!"), or with ``--count`` its numbered copies ``<body>
    #1`` ... ``<body> #N``.

    Parameters:
        prog: the program name for ``--help``.
        description: its help text (the module docstring).

    Raises:
        SystemExit: a usage error (:attr:`~shared.exit_codes.ExitCode.USAGE`).
    """
    parser = Parser(prog=prog, description=description)
    parser.add_argument("body", nargs="*", help="message text (default: 'Hello World!')")
    parser.add_argument(
        "--count", type=int, default=1, help="send N numbered copies: '<body> #1' ..."
    )
    args = parser.parse_args()
    if not 0 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 0 to {MAX_COUNT} (run the program again for more)")
    text = " ".join(args.body) or "Hello World!"
    try:
        text.encode()
    except UnicodeEncodeError as e:  # undecodable bytes in argv arrive as lone surrogates
        parser.error(f"the message text is not valid UTF-8 ({e.reason})")
    # With --count, number the copies ("task. #1", "task. #2", ...) so a reader can follow
    # each one to the worker that ran it; the number adds no work (no dots).
    return [text] if args.count == 1 else [f"{text} #{i}" for i in range(1, args.count + 1)]


def print_sent(bodies: Sequence[str], sent: Sequence[Published]) -> None:
    """The tutorial's `` [x] Sent <body>`` lines (with message_ids), at most ten."""
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}")
    for body, message in zip(bodies[:10], sent, strict=False):
        print(f" [x] Sent {body} ({message.message_id})")
    if len(sent) > 10:
        print(f" [x] ... {len(sent)} messages in all")


def send_main(send: Callable[[str], str]) -> int:
    """The body of every ``send`` program (tutorial 1): publish the command line's words (or
    "Hello World!") with ``send``, then print what was sent."""
    text = " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "Hello World!"
    send(text)
    print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}")
    print(f" [x] Sent {text}")
    return 0
