"""The bad-input corpus: every program against every bad input, one line each.

Every program (``send``, ``receive``, ``new_task``, ``worker`` of each implementation, and
``mqlab send`` / ``mqlab worker``) is run against every case below, concurrently per case. Each
must exit with the case's code, print exactly one ``error: ...`` line on stderr naming the
right thing, print no traceback, and lose nothing already confirmed: a message published to
every work queue before the case is still there after it.

Cases: a missing vhost; users without any permission, or without configure, write or read
(403); queue-name prefixes RabbitMQ or Dramatiq refuses (``amq.``, too many bytes, a space, a
leading digit); ``AMQP_URL`` query options (``?heartbeat=abc``, ``?ssl_options=zz``) and
unparseable URLs, URLs that parse into something else than meant (an empty host label, port 0,
a user without a password, an unescaped ``#`` in the password); a journal in a directory that
does not exist; an unreachable or unresolvable broker; a wrong password; settings that do not
parse; worker options out of range (``--slowdown inf|nan|2000``, ``--prefetch 70000``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import pytest

from shared.exit_codes import ExitCode
from shared.impl import Command, WorkerSpec
from testbed.node import Node, free_port
from tests.helpers import IMPLEMENTATIONS, run_to_end

IMPLS = IMPLEMENTATIONS
PROGRAMS = ("send", "receive", "new_task", "worker")
PRODUCERS = {"send", "new_task", "mqlab send"}
CONSUMERS = {"receive", "worker", "mqlab worker"}
PASSWORD = "corpus-pw"
USERS = {  # user: (configure, write, read) permission regexes on the test vhost
    "corpus_noperm": None,
    "corpus_noconf": ("^$", ".*", ".*"),
    "corpus_nowrite": (".*", "^$", ".*"),
    "corpus_noread": (".*", ".*", "^$"),
}


@dataclass(frozen=True)
class Program:
    """One program: an implementation's ``send|receive|new_task|worker``, or ``mqlab ...``."""

    impl: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.impl}.{self.name}"

    def command(self, worker_args: tuple[str, ...]) -> Command:
        if self.name == "mqlab send":
            return Command([sys.executable, "-m", "lab.cli", "send", "--impl", self.impl, "x"])
        if self.name == "mqlab worker":
            argv = [sys.executable, "-m", "lab.cli", "worker", "--impl", self.impl]
            return Command([*argv, *worker_args])
        impl = IMPLS[self.impl]
        if self.name == "send":
            return impl.send_command("x")
        if self.name == "receive":
            return impl.receive_command()
        if self.name == "new_task":
            return impl.new_task_command(["x"])
        command = impl.worker_command(WorkerSpec(name="corpus"))
        argv = list(command.argv)
        for option in worker_args[::2]:  # the case's options replace the spec's
            if option in argv:
                i = argv.index(option)
                del argv[i : i + 2]
        return Command([*argv, *worker_args], command.env)


ALL_PROGRAMS = [Program(i, p) for i in IMPLS for p in PROGRAMS] + [
    Program("pika", "mqlab send"),
    Program("pika", "mqlab worker"),
]


@dataclass(frozen=True)
class Case:
    """A bad input: the environment it sets, the words its error line must hold, the exit
    code, and which programs it applies to (others would rightly succeed, or run on)."""

    id: str
    env: Callable[[str], dict[str, str]]
    words: tuple[str, ...]
    code: int
    applies: Callable[[Program], bool] = lambda p: True
    worker_args: tuple[str, ...] = ()
    not_words: tuple[str, ...] = ()
    needs_users: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _with(url: str, *, user: str | None = None, password: str | None = None, **parts: str) -> str:
    """``url`` with another user/password, path or query."""
    p = urlparse(url)
    host = p.netloc.rsplit("@", 1)[-1]
    netloc = f"{user}:{password}@{host}" if user is not None else p.netloc
    return urlunparse(p._replace(netloc=netloc, **parts))


def _netloc(url: str, netloc: str) -> str:
    """``url`` with its ``user:password@host:port`` part replaced by ``netloc``."""
    return urlunparse(urlparse(url)._replace(netloc=netloc))


def _host(url: str) -> str:
    """``host:port`` of ``url``."""
    return urlparse(url).netloc.rsplit("@", 1)[-1]


def _as(user: str) -> Callable[[str], dict[str, str]]:
    return lambda url: {"AMQP_URL": _with(url, user=user, password=PASSWORD)}


def _prefix(value: str) -> Callable[[str], dict[str, str]]:
    return lambda url: {"MQLAB_QUEUE_PREFIX": value}


def _workers(p: Program) -> bool:
    return p.name in ("worker", "mqlab worker")


CASES = [
    Case(
        "vhost-missing",
        lambda url: {"AMQP_URL": _with(url, path="/corpus-no-such-vhost")},
        ("vhost", "corpus-no-such-vhost"),
        ExitCode.NOPERM,
    ),
    Case(
        "no-permissions",
        _as("corpus_noperm"),
        ("vhost", "corpus_noperm"),
        ExitCode.NOPERM,
        needs_users=True,
    ),
    Case(
        "403-configure",
        _as("corpus_noconf"),
        ("403", "configure"),
        ExitCode.NOPERM,
        needs_users=True,
    ),
    Case(
        "403-write",
        _as("corpus_nowrite"),
        ("403", "write"),
        ExitCode.NOPERM,
        # Consumers need no write permission (Dramatiq's declare needs it only to create its
        # queues, which dead-letter through the default exchange; here they exist).
        lambda p: p.name in PRODUCERS,
        needs_users=True,
    ),
    Case(
        "403-read",
        _as("corpus_noread"),
        ("403", "read"),
        ExitCode.NOPERM,
        # Producers need no read permission (Dramatiq's declare needs it only to create its
        # queues, with dead-letter arguments; here they exist).
        lambda p: p.name in CONSUMERS,
        needs_users=True,
    ),
    Case("prefix-amq", _prefix("amq.mine."), ("MQLAB_QUEUE_PREFIX", "amq."), ExitCode.CONFIG),
    Case("prefix-too-long", _prefix("p" * 240), ("MQLAB_QUEUE_PREFIX", "bytes"), ExitCode.CONFIG),
    Case("prefix-multibyte", _prefix("é" * 120), ("MQLAB_QUEUE_PREFIX", "bytes"), ExitCode.CONFIG),
    Case(
        "prefix-space", _prefix("my queues."), ("MQLAB_QUEUE_PREFIX", "Dramatiq"), ExitCode.CONFIG
    ),
    Case("prefix-digit", _prefix("1st."), ("MQLAB_QUEUE_PREFIX", "Dramatiq"), ExitCode.CONFIG),
    Case(
        "url-heartbeat",
        lambda url: {"AMQP_URL": _with(url, query="heartbeat=abc")},
        ("AMQP_URL", "heartbeat"),
        ExitCode.CONFIG,
    ),
    Case(
        "url-ssl-options",
        lambda url: {"AMQP_URL": _with(url, query="ssl_options=zz")},
        ("AMQP_URL", "ssl_options"),
        ExitCode.CONFIG,
    ),
    Case(
        "url-garbage", lambda url: {"AMQP_URL": "not a url at all"}, ("AMQP_URL",), ExitCode.CONFIG
    ),
    Case(
        "url-port-range",
        lambda url: {"AMQP_URL": "amqp://u:p@127.0.0.1:99999/%2F"},
        ("AMQP_URL",),
        ExitCode.CONFIG,
    ),
    Case(
        "url-port-nan",
        lambda url: {"AMQP_URL": "amqp://u:p@127.0.0.1:abc/%2F"},
        ("AMQP_URL",),
        ExitCode.CONFIG,
    ),
    Case(
        "url-ipv6-bracket",
        lambda url: {"AMQP_URL": "amqp://u:p@[::1:5672/"},
        ("AMQP_URL",),
        ExitCode.CONFIG,
    ),
    # URL forms that parse into something else than meant: one line, never another broker.
    Case(
        "url-empty-host-label",
        lambda url: {"AMQP_URL": _netloc(url, f"u:p@rabbit..local:{urlparse(url).port}")},
        ("AMQP_URL", "rabbit..local", "host name"),
        ExitCode.CONFIG,
    ),
    Case(
        "url-port-0",  # kombu read port 0 as "not given": Celery reached 5672
        lambda url: {"AMQP_URL": "amqp://u:p@127.0.0.1:0/%2F"},
        ("AMQP_URL", "port 0"),
        ExitCode.CONFIG,
    ),
    # Credentials: a user without a password; a password with an unescaped '#'.
    Case(
        "url-user-without-password",
        lambda url: {"AMQP_URL": _netloc(url, f"{urlparse(url).username}@{_host(url)}")},
        ("AMQP_URL", "without a password"),
        ExitCode.CONFIG,
    ),
    Case(
        "url-hash-in-password",
        lambda url: {"AMQP_URL": _netloc(url, f"u:S3cret#Mark@{_host(url)}")},
        ("AMQP_URL", "%23"),
        ExitCode.CONFIG,
        not_words=("S3cret", "Mark"),
    ),
    # Paths: a journal in a directory that does not exist (the workers write it).
    Case(
        "journal-no-directory",
        lambda url: {"MQLAB_JOURNAL": "/nonexistent-mqlab-dir/journal.db"},
        ("MQLAB_JOURNAL", "does not exist"),
        ExitCode.CONFIG,
        _workers,
    ),
    Case(
        "unreachable",
        lambda url: {"AMQP_URL": f"amqp://u:p@127.0.0.1:{free_port()}/%2F"},
        ("connect", "127.0.0.1"),
        ExitCode.UNAVAILABLE,
    ),
    Case(
        "unresolvable-host",
        lambda url: {"AMQP_URL": "amqp://u:p@no-such-host.invalid:5672/%2F"},
        ("no-such-host.invalid",),
        ExitCode.UNAVAILABLE,
    ),
    Case(
        "wrong-password",
        lambda url: {"AMQP_URL": _with(url, user=urlparse(url).username, password="wrong")},
        ("password",),
        ExitCode.NOPERM,
    ),
    Case(
        "setting-prefetch",
        lambda url: {"MQLAB_PREFETCH": "abc"},
        ("MQLAB_PREFETCH",),
        ExitCode.CONFIG,
        lambda p: p.name != "mqlab worker",  # it sets MQLAB_PREFETCH from its --prefetch
    ),
    Case(
        "setting-heartbeat",
        lambda url: {"MQLAB_HEARTBEAT": "-5"},
        ("MQLAB_HEARTBEAT",),
        ExitCode.CONFIG,
    ),
    Case(
        "setting-blocked-timeout",
        lambda url: {"MQLAB_BLOCKED_TIMEOUT": "0"},
        ("MQLAB_BLOCKED_TIMEOUT",),
        ExitCode.CONFIG,
    ),
    *[
        Case(
            f"slowdown-{value}",
            lambda url: {},
            ("--slowdown",),
            ExitCode.USAGE,
            _workers,
            worker_args=("--slowdown", value),
            not_words=("MQLAB_SLOWDOWN",),
        )
        for value in ("inf", "nan", "2000", "-1", "abc")
    ],
    Case(
        "prefetch-70000",
        lambda url: {},
        ("--prefetch",),
        ExitCode.USAGE,
        _workers,
        ("--prefetch", "70000"),
    ),
]

_FRAMEWORK_NOISE = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,]+: (INFO|WARNING)/"  # Celery's log lines
    r"|^\[[\d\- :,]+\] \[PID \d+\] \[[\w-]+\] \[[\w.()]+\] \[(INFO|DEBUG|WARNING)\] "
    r"|^\[[\d\- :,]+\] \[PID \d+\] \[MainThread\] \[dramatiq.MainProcess\] \[CRITICAL\] "
    r"Worker with PID \d+ exited unexpectedly \(code \d+\)"  # the main process stopping
)


def stderr_lines(stderr: str) -> list[str]:
    """stderr without the frameworks' own lifecycle lines: Celery's INFO/WARNING log lines and
    its root-only ``SecurityWarning`` block, Dramatiq's INFO lines and its main process's line
    saying that a worker process exited (with our code)."""
    lines, skipping = [], False
    for line in stderr.splitlines():
        if "SecurityWarning: You're running the worker with superuser" in line:
            skipping = True
        if skipping:
            skipping = "_warn_or_raise_security_error" not in line
            continue
        if line.strip() and not _FRAMEWORK_NOISE.search(line):
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def corpus_users(single_node: Node) -> Iterator[None]:
    """Users without some permission on the broker's vhost (management API); removed after.
    The corpus runs on the classic topology's node (``broker`` is per test: it follows the
    topology), which is the session's ``single_node``."""
    broker = single_node
    try:
        for user, perms in USERS.items():
            broker.management.add_user(user, PASSWORD)
            if perms:
                broker.management.set_permissions(user, *perms)
    except Exception as e:  # noqa: BLE001  (not an administrator on an external broker)
        pytest.skip(f"cannot create users on this broker: {e}")
    yield
    for user in USERS:
        broker.management.delete_user(user)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(broker: Node, case: Case, request: pytest.FixtureRequest) -> None:
    if case.needs_users:
        request.getfixturevalue("corpus_users")
    # Something confirmed before: one message on every work queue.
    markers = {
        impl.name: impl.publish_work(["confirmed before the bad input"])[0]
        for impl in IMPLS.values()
    }
    env = {"AMQP_URL": broker.amqp_url, "MQLAB_CONNECT_TIMEOUT": "5", **case.env(broker.amqp_url)}
    programs = [p for p in ALL_PROGRAMS if case.applies(p)]

    def run(program: Program) -> tuple[Program, int, str]:
        result = run_to_end(program.command(case.worker_args), env, timeout=30)
        return program, result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, programs))

    failures = []
    for program, code, stderr in results:
        lines = stderr_lines(stderr)
        line = lines[0] if lines else ""
        problems = []
        if code != case.code:
            problems.append(f"exit {code}, expected {case.code}")
        if "Traceback" in stderr:
            problems.append("a traceback")
        if len(lines) != 1 or not line.startswith("error: "):
            problems.append(f"{len(lines)} lines, expected one 'error: ...' line")
        problems += [f"no '{w}'" for w in case.words if w not in line]
        problems += [f"names '{w}'" for w in case.not_words if w in line]
        if problems:
            failures.append(f"{program.id}: {'; '.join(problems)}\n{stderr.strip()[-1500:]}")
    assert not failures, "\n\n".join(failures)

    # Nothing confirmed was lost: every work queue still holds its message (read through the
    # management API's get, which puts it back at once; exact, unlike sampled figures).
    for impl in IMPLS.values():
        held = json.dumps(broker.management.peek(impl.task_queue()))
        assert markers[impl.name] in held, f"{impl.name}: the confirmed message is gone"


def test_corpus_controls(broker: Node, corpus_users: None) -> None:
    """The corpus could pass vacuously if the harness took any exit for a failure or the
    users could not log in at all: a good run exits 0 with no error line, and a user without
    read permission may still publish with pika (so its consumers' 403 is about reading)."""
    impl = IMPLS["pika"]
    good = run_to_end(impl.new_task_command(["x"]), {"AMQP_URL": broker.amqp_url})
    assert good.returncode == 0 and not stderr_lines(good.stderr), good.stderr
    as_noread = run_to_end(impl.new_task_command(["x"]), _as("corpus_noread")(broker.amqp_url))
    assert as_noread.returncode == 0, as_noread.stderr
    wrong = run_to_end(impl.new_task_command(["x"]), {"AMQP_URL": "amqp://u:p@127.0.0.1:1/"})
    assert wrong.returncode == ExitCode.UNAVAILABLE and len(stderr_lines(wrong.stderr)) == 1


@pytest.mark.timeout(60)
def test_compare_never_prints_the_password(tmp_path: object) -> None:
    """``mqlab compare --amqp-url`` with a broker that does not answer: one line, the URL
    masked (``user:**@``), no claim about guest/guest."""
    secret = "s3cret-pw"
    url = f"amqp://someone:{secret}@127.0.0.1:{free_port()}/%2F"
    result = run_to_end(
        Command([sys.executable, "-m", "lab.cli", "compare", "--amqp-url", url, "--quick",
                 "--impl", "pika", "--scenario", "footprint", "--out", str(tmp_path)]),
        {},
        timeout=50,
    )  # fmt: skip
    lines = stderr_lines(result.stderr)
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "someone:**@" in lines[0], lines[0]
    assert secret not in result.stderr + result.stdout
    assert "guest/guest" not in result.stderr
