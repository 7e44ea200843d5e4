"""Registry of the implementations, found by import so a missing one is reported, not faked."""

from __future__ import annotations

import importlib

from shared.impl import Implementation

KNOWN: dict[str, str] = {
    "pika": "raw_pika.impl",
    "celery": "celery_impl.impl",
    "dramatiq": "dramatiq_impl.impl",
    "faststream": "faststream_impl.impl",
}
"""Implementation id -> module exposing ``IMPLEMENTATION``."""


class MissingImplementation(LookupError):
    """The implementation's package is not there (yet) or failed to import."""


def get(name: str) -> Implementation:
    """The implementation called ``name``.

    Raises:
        MissingImplementation: unknown name, or its package cannot be imported.
    """
    if name not in KNOWN:
        raise MissingImplementation(f"unknown implementation {name!r}; known: {', '.join(KNOWN)}")
    try:
        module = importlib.import_module(KNOWN[name])
    except ModuleNotFoundError as e:
        raise MissingImplementation(f"{name}: package not present ({e})") from e
    impl: Implementation = module.IMPLEMENTATION
    return impl


def available() -> dict[str, Implementation]:
    """Every implementation that imports, keyed by id, in :data:`KNOWN` order."""
    out = {}
    for name in KNOWN:
        try:
            out[name] = get(name)
        except MissingImplementation:
            continue
    return out


def missing() -> dict[str, str]:
    """Implementations that are not available, with the reason."""
    out = {}
    for name in KNOWN:
        try:
            get(name)
        except MissingImplementation as e:
            out[name] = str(e)
    return out
