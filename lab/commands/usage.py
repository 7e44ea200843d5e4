"""What the ``mqlab`` commands share: the console, usage errors and choosing implementations and
scenarios from the command line."""

from __future__ import annotations

from rich.console import Console

from lab.scenarios import ALL, KNOWN
from shared import errors
from shared.impl import Implementation
from testbed import registry

console = Console(soft_wrap=True)  # a long line (a ;-joined AMQP_URL) stays one copyable line


UsageError = errors.UsageError
"""Bad command-line input (:attr:`~shared.exit_codes.ExitCode.USAGE`)."""


def split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def select_implementations(names: list[str]) -> tuple[list[Implementation], dict[str, str]]:
    """The implementations to run and the missing ones (with the reason).

    With no ``names``, every known implementation: the available ones run, the others are
    listed as missing.

    Raises:
        UsageError: an unknown name, or none of the asked-for implementations is available.
    """
    unknown = [n for n in names if n not in registry.KNOWN]
    if unknown:
        raise UsageError(
            f"unknown implementation {', '.join(unknown)}; known: {', '.join(registry.KNOWN)}"
        )
    wanted = names or list(registry.KNOWN)
    available = registry.available()
    missing = {n: r for n, r in registry.missing().items() if n in wanted}
    impls = [available[n] for n in wanted if n in available]
    if not impls:
        raise UsageError(f"no implementation available among {', '.join(wanted)}: {missing}")
    return impls, missing


def select_scenarios(names: list[str]) -> list[str]:
    """Scenario names in run order: ``names``, or every scenario of the default run.

    Raises:
        UsageError: an unknown scenario.
    """
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise UsageError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    return [n for n in KNOWN if n in names] if names else list(ALL)


def one_impl(name: str) -> Implementation:
    try:
        return registry.get(name)
    except registry.MissingImplementation as e:
        raise UsageError(str(e)) from None
