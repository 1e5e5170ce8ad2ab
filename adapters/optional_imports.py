"""Importing a library without the optional dependencies it would load but we never use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(*packages: str) -> Iterator[None]:
    """Imports inside the block find ``packages`` missing, unless they are already loaded.

    For a library that imports an optional dependency only to support a feature we do not
    use, where the dependency costs memory in every process (``import x`` raises
    ``ImportError`` while ``sys.modules["x"]`` is None; the entry is removed afterwards, so a
    later ``import x`` anywhere works as usual). Use it at module level, where imports happen
    on one thread at start."""
    hiding = [name for name in packages if name not in sys.modules]
    for name in hiding:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hiding:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
