"""Generators are found through the ``synthgen.generators`` entry-point group.

Built-ins register through the same door (see ``pyproject.toml``), so a faculty's plugin package is
a first-class citizen: ``pip install`` it and its generators appear in ``synthgen generators``.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from synthgen.errors import GeneratorNotFound
from synthgen.generators.base import Generator

__all__ = ["available_generators", "conflicts", "get_generator", "refresh_generators"]

GROUP = "synthgen.generators"


@cache
def _entry_points() -> dict[str, list[EntryPoint]]:
    """name -> its registrations; one package seen twice on the path (same target) counts once."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return found


def _provider(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name if dist is not None else '?'} ({ep.value})"


def conflicts() -> dict[str, list[str]]:
    """Names that more than one installed package registers: name -> "package (module:Class)".

    Which one would win depends on the order of ``sys.path``, so a recipe naming one of them could
    silently run another package's code; such a name is refused until one package renames it.
    """
    return {name: [_provider(ep) for ep in eps] for name, eps in _entry_points().items() if len(eps) > 1}


def available_generators() -> dict[str, type[Generator]]:
    """name -> class for every installed generator (names in conflict left out: see ``conflicts``)."""
    return {name: get_generator(name) for name, eps in sorted(_entry_points().items()) if len(eps) == 1}


def get_generator(name: str) -> type[Generator]:
    eps = _entry_points()
    if name not in eps:
        close = difflib.get_close_matches(name, eps, n=1)
        hint = (
            f"did you mean {close[0]!r}? " if close else ""
        ) + f"available: {', '.join(sorted(eps)) or 'none'}"
        raise GeneratorNotFound(f"unknown generator {name!r}", hint=hint)
    if len(eps[name]) > 1:
        providers = ", ".join(_provider(ep) for ep in eps[name])
        raise GeneratorNotFound(
            f"generator {name!r} is registered by {len(eps[name])} installed packages: {providers}",
            hint=f'rename the entry point under [project.entry-points."{GROUP}"] in one of them '
            "(or uninstall it), so the recipe says which code it runs",
        )
    cls = eps[name][0].load()
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise GeneratorNotFound(f"entry point {name!r} is not a synthgen Generator subclass", hint=str(cls))
    return cls


def refresh_generators() -> None:
    """Forget cached entry points (after installing a plugin in the same process)."""
    _entry_points.cache_clear()
