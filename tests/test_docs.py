"""The documents hold: every relative link in README.md, CHANGELOG.md and ``docs/*.md`` resolves
(the file, and its ``#anchor`` as GitHub renders headings), and every command a code block shows
exists: for ``mqlab ...``, ``python -m <module> ...``, ``celery -A <app> <command> ...``,
``dramatiq <module> ...``, ``faststream <command> ...`` its ``--help`` exits 0, and for
``make <target>`` ``make -n <target>`` does. No broker is needed (no ``broker`` marker):
``AMQP_URL`` is removed from the programs' environment. The negative controls feed the same
checks a document with a broken link, a broken anchor and unknown commands."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
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


def failure(check: Check) -> str | None:
    """Why ``check`` fails (its module does not import, or its call exits non-zero), or None."""
    if check.module is not None:
        name = check.module.split(":")[0]
        if importlib.util.find_spec(name.split(".")[0]) is None:
            return f"module {name!r} not found"
    argv = list(check.argv)
    if argv[0] == "mqlab":
        argv = [sys.executable, "-c", "import sys; from lab.cli import main; sys.exit(main())"]
        argv += list(check.argv[1:])
    env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"{' '.join(check.argv)} exited {done.returncode}: {tail[0]}"
    return None


DOC_COMMANDS = commands(documents())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("check", list(DOC_COMMANDS), ids=lambda c: " ".join(c.argv[-4:]))
def test_every_documented_command_exists(check: Check) -> None:
    assert failure(check) is None, DOC_COMMANDS[check]


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
    failed = {" ".join(check.argv[-3:]): failure(check) for check in commands([page])}
    good = "-m raw_pika.send --help"
    assert failed.pop(good) is None
    assert len(failed) == 4
    assert all(why is not None for why in failed.values()), failed
