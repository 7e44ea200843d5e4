"""The documents hold: every relative link in README.md, CHANGELOG.md and ``docs/*.md`` resolves
(the file, and its ``#anchor`` as GitHub renders headings), and every command a code block shows
exists: for ``mqlab ...``, ``python -m <module> ...``, ``celery -A <app> <command> ...``,
``dramatiq <module> ...``, ``faststream <command> ...`` its ``--help`` exits 0, and for
``make <target>`` ``make -n <target>`` does. No broker is needed (no ``broker`` marker):
``AMQP_URL`` is removed from the programs' environment. The negative controls feed the same
checks a document with a broken link, a broken anchor and unknown commands.

Most ``--help`` checks run in this process (a Python start imports the frameworks again each
time, about 1 s of CPU): ``mqlab ...`` through :func:`lab.cli.parser`, ``python -m <module>``
through :func:`runpy.run_module` as ``__main__``; ``--help`` is argparse's ``SystemExit(0)``.
A real process still proves each entry point (:data:`REAL`): the ``mqlab`` console script,
one ``python -m`` program per implementation, the frameworks' own commands and ``make``; those
run once, side by side (:func:`real_failures`)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELP_TIMEOUT = 60.0
"""Seconds one ``--help`` may take (a loaded 2-core machine imports Celery slowly)."""

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
PROGRAMS = ("mqlab", "python", "celery", "dramatiq", "faststream", "make")


def documents() -> list[Path]:
    """The checked documents: README.md, CHANGELOG.md (when present) and ``docs/*.md``."""
    found = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [path for path in found if path.is_file()]


def prose_and_code(text: str) -> tuple[list[str], list[str]]:
    """Split a Markdown text into its prose lines and its fenced code lines (continuation lines
    ending in ``\\`` joined)."""
    prose: list[str] = []
    code: list[str] = []
    fenced = False
    pending = ""
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            prose.append(line)
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        code.append(pending + line)
        pending = ""
    return prose, code


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading (github-slugger): Markdown links reduced to their text,
    inline markup dropped, lower case, every character but letters, digits, ``_``, ``-`` and
    spaces removed, spaces made ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "_- ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings' slugs (a repeated one gets ``-1``, ``-2``
    as on GitHub) and explicit ``<a name=...>``/``<a id=...>`` anchors."""
    prose, _ = prose_and_code(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose:
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` that do not resolve, as ``'<target>: <why>'``; web links
    (``http(s):``, ``mailto:``) are not followed."""
    prose, _ = prose_and_code(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    for line in prose:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{target}: no heading '#{anchor}' in {linked.name}")
    return problems


@dataclass(frozen=True)
class Check:
    """One command a document shows, reduced to the call that proves it exists."""

    argv: tuple[str, ...]
    module: str | None = None
    """A module the command names (``celery -A app``, ``dramatiq module``) that must import."""


def check_for(command: str) -> Check | None:
    """The check for one code line (``$ `` prompt, leading ``VAR=value`` and ``# comment``
    dropped), or None when the line is not one of the programs the documents must keep in
    step with."""
    line = command.strip().removeprefix("$ ").strip()
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value program ...
        words = words[1:]
    if not words or words[0] not in PROGRAMS:
        return None
    program, rest = words[0], words[1:]
    leading: list[str] = []
    for word in rest:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", word):
            break
        leading.append(word)
    if program == "make":
        return Check(("make", "-n", "-C", str(ROOT), *leading[:1])) if leading else None
    if program == "mqlab":
        return Check(("mqlab", *leading, "--help"))
    if program == "python":
        if len(rest) < 2 or rest[0] != "-m":
            return None
        return Check((sys.executable, "-m", rest[1], "--help"))
    if program == "celery":
        if len(rest) < 3 or rest[0] != "-A":
            return None
        return Check((sys.executable, "-m", "celery", "-A", rest[1], rest[2], "--help"), rest[1])
    if program == "dramatiq":
        module = rest[0] if rest and not rest[0].startswith("-") else None
        return Check((sys.executable, "-m", "dramatiq", "--help"), module)
    return Check((sys.executable, "-m", "faststream", *leading[:1], "--help"))


def commands(paths: list[Path]) -> dict[Check, str]:
    """Each distinct check of the documents' code blocks, with the first line that needs it."""
    found: dict[Check, str] = {}
    for path in paths:
        _, code = prose_and_code(path.read_text(encoding="utf-8"))
        for line in code:
            check = check_for(line)
            if check is not None:
                found.setdefault(check, f"{path.relative_to(path.parent.parent)}: {line.strip()}")
    return found


def module_check(check: Check) -> str | None:
    """Why ``check``'s module (``celery -A <app>``, ``dramatiq <module>``) cannot be found, or
    None."""
    if check.module is not None:
        name = check.module.split(":")[0]
        if importlib.util.find_spec(name.split(".")[0]) is None:
            return f"module {name!r} not found"
    return None


def real_argv(check: Check) -> list[str]:
    """The command line of ``check`` as a process: ``mqlab`` is the installed console script
    (next to this interpreter)."""
    argv = list(check.argv)
    if argv[0] == "mqlab":
        argv[0] = str(Path(sys.executable).with_name("mqlab"))
    return argv


def run_real(check: Check) -> str | None:
    """Why ``check`` fails as a real process (its module does not import, or its call exits
    non-zero), or None."""
    if (why := module_check(check)) is not None:
        return why
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    done = subprocess.run(
        real_argv(check), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=HELP_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"{' '.join(check.argv)} exited {done.returncode}: {tail[0]}"
    return None


@contextlib.contextmanager
def program_context(argv: list[str]) -> Iterator[io.StringIO]:
    """``sys.argv`` set to ``argv``, ``AMQP_URL`` unset and the output captured (yielded) for
    the block, everything restored after it."""
    saved_argv, saved_url = sys.argv, os.environ.pop("AMQP_URL", None)
    out = io.StringIO()
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield out
    finally:
        sys.argv = saved_argv
        if saved_url is not None:
            os.environ["AMQP_URL"] = saved_url


def run_in_process(check: Check) -> str | None:
    """Why ``check`` (``mqlab ...`` or ``python -m <module> --help``) fails in this process, or
    None: the ``mqlab`` parser, or the module run as ``__main__``, must end in ``SystemExit(0)``
    (argparse's ``--help``)."""
    from lab.cli import parser

    name = " ".join(check.argv)
    with program_context([check.argv[0], *check.argv[3:]]) as out:
        try:
            if check.argv[0] == "mqlab":
                parser().parse_args(list(check.argv[1:]))
            else:
                with warnings.catch_warnings():  # another test imported the module already:
                    warnings.simplefilter("ignore", RuntimeWarning)  # runpy runs it afresh
                    runpy.run_module(check.argv[2], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code
        except Exception as e:  # an import error, a module that is not a program
            return f"{name} raised {type(e).__name__}: {e}"
        else:
            return f"{name} returned instead of exiting 0 after its help"
    if code not in (0, None):
        tail = out.getvalue().strip().splitlines()[-1:] or [""]
        return f"{name} exited {code}: {tail[0]}"
    return None


def in_process(check: Check) -> bool:
    """Whether ``check`` can run in this process: ``mqlab ...`` and ``python -m <module>`` of
    an implementation package."""
    if check.argv[0] == "mqlab":
        return True
    python_m = check.argv[1:2] == ("-m",) and check.module is None
    return python_m and check.argv[2].split(".")[0] in IMPLEMENTATION_PACKAGES


IMPLEMENTATION_PACKAGES = ("raw_pika", "celery_impl", "dramatiq_impl", "faststream_impl")


def real_checks(checks: list[Check]) -> list[Check]:
    """The checks that run as real processes: each one that cannot run in this process, the
    ``mqlab`` console script itself (``mqlab --help``) and the first ``python -m`` program of
    each implementation package, so that a broken entry point still fails."""
    real = [c for c in checks if not in_process(c)] + [Check(("mqlab", "--help"))]
    for package in IMPLEMENTATION_PACKAGES:
        real += [c for c in checks if in_process(c) and c.argv[2].startswith(f"{package}.")][:1]
    return list(dict.fromkeys(real))


@functools.cache
def real_failures(checks: tuple[Check, ...]) -> dict[Check, str | None]:
    """:func:`run_real` of each of ``checks``, run side by side, once per test session."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(checks, pool.map(run_real, checks), strict=True))


def failure(check: Check, real: tuple[Check, ...] = ()) -> str | None:
    """Why ``check`` fails, or None: in this process and also as a real process when it is one
    of ``real`` (or cannot run in this process)."""
    if (why := module_check(check)) is not None:
        return why
    if in_process(check) and (why := run_in_process(check)) is not None:
        return why
    if check in real or not in_process(check):
        return real_failures(tuple(dict.fromkeys((*real, check))))[check]
    return None


DOC_COMMANDS = commands(documents())
REAL = tuple(real_checks(list(DOC_COMMANDS)))
"""The checks that also run as a real process (:func:`real_checks`)."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("check", list(DOC_COMMANDS), ids=lambda c: " ".join(c.argv[-4:]))
def test_every_documented_command_exists(check: Check) -> None:
    assert failure(check, REAL) is None, DOC_COMMANDS[check]


@pytest.mark.timeout(120)
def test_each_entry_point_is_also_started_as_a_process() -> None:
    """The console script, one program per implementation and each framework's own command
    run as processes (the in-process checks cannot see a broken script or ``__main__``)."""
    programs = {c.argv[0] if c.argv[1:2] != ("-m",) else c.argv[2].split(".")[0] for c in REAL}
    assert {"mqlab", "make", *IMPLEMENTATION_PACKAGES, "celery", "dramatiq"} <= programs
    assert {"faststream"} <= {c.argv[2] for c in REAL if c.argv[1:2] == ("-m",)}
    failed = {" ".join(c.argv): why for c, why in real_failures(REAL).items() if why}
    assert failed == {}


@pytest.mark.timeout(120)
def test_a_broken_link_and_an_unknown_command_are_reported(tmp_path: Path) -> None:
    """Negative control: the same checks report a missing file, a missing anchor and commands
    that do not exist; the good link and command beside them pass (positive control)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.md"
    page.write_text(
        "# A page\n\n## Good `heading`, here\n\n"
        "[good](#good-heading-here) [gone](missing.md) [bad anchor](page.md#nowhere)\n\n"
        "```sh\nmqlab nosuch --flag\npython -m raw_pika.nosuch\nmake nosuchtarget\n"
        "celery -A nosuch_app worker -c 1\npython -m raw_pika.send   # exists\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "page.md#nowhere: no heading '#nowhere' in page.md",
    ]
    found = list(commands([page]))
    failed = {" ".join(check.argv[-3:]): failure(check) for check in found}
    good = "-m raw_pika.send --help"
    assert failed.pop(good) is None
    assert len(failed) == 4
    assert all(why is not None for why in failed.values()), failed
    # the same as real processes: the console script with an unknown subcommand, a missing
    # module and an app that does not exist fail there too; the good program passes
    real = tuple(c for c in found if c.argv[0] != "make")
    assert {" ".join(c.argv[-3:]): why is None for c, why in real_failures(real).items()} == {
        "mqlab nosuch --help": False,
        "-m raw_pika.nosuch --help": False,
        "nosuch_app worker --help": False,
        good: True,
    }
