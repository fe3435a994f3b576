"""Generators are found through the ``synthgen.generators`` entry-point group.

Built-ins register through the same door (see ``pyproject.toml``), so a faculty's plugin package is
a first-class citizen: ``pip install`` it and its generators appear in ``synthgen generators``.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import entry_points

from .errors import GeneratorNotFound
from .generator import Generator

__all__ = ["available_generators", "get_generator"]

GROUP = "synthgen.generators"


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available_generators() -> dict[str, type[Generator]]:
    """name -> class for every installed generator."""
    return {name: get_generator(name) for name in sorted(_entry_points())}


def get_generator(name: str) -> type[Generator]:
    eps = _entry_points()
    if name not in eps:
        close = difflib.get_close_matches(name, eps, n=1)
        hint = (
            f"did you mean {close[0]!r}? " if close else ""
        ) + f"available: {', '.join(sorted(eps)) or 'none'}"
        raise GeneratorNotFound(f"unknown generator {name!r}", hint=hint)
    cls = eps[name].load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise GeneratorNotFound(f"entry point {name!r} is not a synthgen Generator subclass", hint=str(cls))
    return cls


def refresh() -> None:
    """Forget cached entry points (after installing a plugin in the same process)."""
    _entry_points.cache_clear()
