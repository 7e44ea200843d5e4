"""Entry-point wrapper shared by every program: one-line errors and honest exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from shared.errors import MqlabError


def run(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with its code.

    A :class:`~shared.errors.MqlabError` becomes ``error: <message>`` on stderr and its
    ``exit_code``; Ctrl+C exits with 130 without a traceback.
    """
    try:
        code = main()
    except MqlabError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
