"""Where a recipe may read: beside itself and its seeds, so a shared recipe cannot send (or publish)
any other file of this machine; ``--allow-outside-paths`` lifts it for a recipe one trusts."""

from __future__ import annotations

import itertools
from pathlib import Path

from synthgen.errors import RecipeError
from synthgen.recipe.model import Recipe
from synthgen.yamlconfig import Lines, dotted, line_for

__all__ = ["Confinement", "fixed_prefix"]


class Confinement:
    """Where a recipe may read: its own folder and the folders of its seeds files."""

    def __init__(self, recipe: Recipe, path: Path, lines: Lines) -> None:
        self.roots = sorted({recipe.base_dir.resolve(), *(s.parent for s in recipe.seeds)})
        self.path, self.lines = path, lines

    def check(self, target: str | Path, loc: tuple[str | int, ...]) -> None:
        resolved = Path(target).resolve()  # a symbolic link is judged by where it points
        if any(resolved.is_relative_to(root) for root in self.roots):
            return
        raise RecipeError(
            f"reads {resolved}, outside the recipe's folder and its seeds' folders",
            path=self.path,
            line=line_for(self.lines, loc),
            field=dotted(loc),
            hint="a recipe may read only files beside it or its seeds; if you trust this recipe, pass "
            "--allow-outside-paths (allow_outside_paths=True)",
        )


def fixed_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: where the pattern can reach at most."""
    parts = Path(pattern).parts
    fixed = [p for p in itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts)]
    return str(Path(*fixed)) if fixed else pattern
