"""Loading a recipe: YAML -> :class:`Recipe`, with everything checkable offline checked before any
money is spent: the schema, paths (resolved relative to the recipe file, confined beside it and its
seeds), the seeds, each step's ``config`` against its generator's ``Config``, profile names, ``from``
references, prompt templates and the files a step reads. Errors read
``recipe.yaml:12: steps[0].config.turns: ... (hint)`` (the YAML-to-model machinery, shared with eval
recipes, is :mod:`synthgen.yamlconfig`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import (
    ValidationError,
)

from synthgen.errors import ConfigError, RecipeError
from synthgen.generators.base import Generator
from synthgen.generators.registry import get_generator
from synthgen.recipe.confine import Confinement, fixed_prefix
from synthgen.recipe.model import Recipe
from synthgen.seeds import Seed, load_personas, load_seeds
from synthgen.yamlconfig import Lines, dotted, line_for, load_yaml_model, raise_validation, undotted

__all__ = ["load_recipe"]


def load_recipe(path: str | Path, *, allow_outside_paths: bool = False) -> Recipe:
    """Read, validate and resolve a recipe; raise :class:`RecipeError` (or SeedError) on any problem.

    Every file a recipe reads besides its seeds (personas, prompt overrides, documents and any other
    generator input) must lie inside the recipe's folder or a seeds file's folder: a shared recipe
    must not read (and send to its endpoint, or publish) a file elsewhere on this machine, unless
    ``allow_outside_paths`` says the recipe is trusted.
    """
    path = Path(path)
    recipe, lines = load_yaml_model(path, Recipe, what="recipe", keys="name, seeds, models, steps")
    base = path.resolve().parent
    recipe.path = path.resolve()
    recipe.seeds = [(base / p).resolve() for p in recipe.seeds]
    recipe.prompts = {k: (base / p).resolve() for k, p in recipe.prompts.items()}
    for i, seeds_path in enumerate(recipe.seeds):
        if not seeds_path.is_file():
            raise RecipeError(
                f"seeds file {_missing(seeds_path)}: {seeds_path}",
                path=path,
                line=line_for(lines, ("seeds", i)),
                field="seeds",
                hint="name a .yaml, .jsonl or .csv file; paths are relative to the recipe file",
            )
    seeds: list[Seed] = []
    taken: dict[str, Path] = {}  # ids must be unique across the files: the second file's line is named
    for seeds_path in recipe.seeds:
        loaded = load_seeds(seeds_path, language=recipe.language, taken=taken)
        taken.update((s.id, seeds_path) for s in loaded)
        seeds.extend(loaded)
    recipe.loaded_seeds = seeds
    personas = recipe.personas
    if personas is None:
        default = recipe.seeds[0].parent / "personas.yaml"
        personas = default if default.is_file() else None
    else:
        personas = (base / personas).resolve()
        if not personas.is_file():
            raise RecipeError(
                f"personas file {_missing(personas)}: {personas}",
                path=path,
                line=line_for(lines, ("personas",)),
                field="personas",
                hint="paths are relative to the recipe file",
            )
    recipe.personas = personas
    confine = None if allow_outside_paths else Confinement(recipe, path, lines)
    if confine is not None:
        if personas is not None:
            confine.check(personas, ("personas",))
        for role, prompt in recipe.prompts.items():
            confine.check(prompt, ("prompts", role))
    recipe.loaded_personas = load_personas(personas) if personas else []
    _check_steps(recipe, path, lines, confine)
    return recipe


def _missing(path: Path) -> str:
    """Why ``path`` is not a file, in the user's words."""
    return "is a directory, not a file" if path.is_dir() else "not found"


def _where_is(node: object, value: str) -> tuple[str | int, ...]:
    """Path of the first config entry holding ``value`` (a profile name, maybe in a pool list); () if none."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if child == value:
            return (key,)
        found = _where_is(child, value)
        if found:
            return (key, *found)
    return ()


def _check_files(recipe: Recipe, generator: Generator, i: int, path: Path, lines: Lines) -> None:
    """Plan a step whose generator reads files (its ``path_fields``, e.g. documents) now.

    Planning reads them: a glob matching nothing, a missing, unsupported, empty or encrypted document
    is then a recipe error at load time, naming the step, before ``run`` has created its RUN_DIR.
    """
    splits = {s.id: "train" for s in recipe.loaded_seeds}  # the items are not kept: any split will do
    try:
        generator.plan(recipe.loaded_seeds, splits, recipe.seed, recipe.steps[i].name)
    except ConfigError as exc:
        named: tuple[str, ...] = getattr(generator, "path_fields", ())
        # the field the generator names, else the one path field it has (a document's own problem)
        field = exc.field or (f"config.{named[0]}" if len(named) == 1 else "config")
        field = field.replace("steps[].", "")
        loc: tuple[str | int, ...] = ("steps", i, *undotted(field))
        raise RecipeError(
            exc.message,
            path=exc.path or path,  # a document's own problem is fixed in the document
            line=exc.line if exc.path else line_for(lines, loc),
            field=dotted(loc),
            hint=exc.hint,
        ) from None


def _check_steps(recipe: Recipe, path: Path, lines: Lines, confine: Confinement | None) -> None:
    def check_prompt(role: str) -> None:
        library = recipe.prompt_library()  # per call: plugin packages of the steps checked so far
        try:
            library.get(role)
        except ConfigError as exc:
            overridden = exc.path is None and role in recipe.prompts  # the recipe line names the missing file
            line = line_for(lines, ("prompts", role)) if overridden else exc.line
            raise RecipeError(
                exc.message, path=exc.path or path, line=line, field=f"prompts.{role}", hint=exc.hint
            ) from None

    for role in recipe.prompts:  # an override of a role no step uses still has to exist and parse
        check_prompt(role)
    for i, step in enumerate(recipe.steps):
        loc: tuple[str | int, ...] = ("steps", i)
        try:
            cls = get_generator(step.generator)
        except ConfigError as exc:
            raise RecipeError(
                exc.message,
                path=path,
                line=line_for(lines, (*loc, "generator")),
                field=f"steps[{i}].generator",
                hint=exc.hint,
            ) from None
        for field in getattr(cls, "path_fields", ()):
            value = step.config.get(field)
            if isinstance(value, str):
                step.config[field] = str((recipe.base_dir / value).resolve())
            elif isinstance(value, list):
                step.config[field] = [str((recipe.base_dir / v).resolve()) for v in value]
        try:
            generator = recipe.generator(step)
        except ValidationError as exc:
            raise_validation(exc, path, lines, cls.Config, prefix=(*loc, "config"))
            raise  # pragma: no cover
        if confine is not None:
            try:
                inputs = generator.inputs()
            except ConfigError:
                inputs = []  # a pattern matching nothing: reported where the step plans its items
            for field in getattr(cls, "path_fields", ()):
                value = step.config.get(field)
                for pattern in [value] if isinstance(value, str) else value or []:
                    confine.check(fixed_prefix(pattern), (*loc, "config", field))
            for found in inputs:
                confine.check(found, (*loc, "config"))
        for name in generator.profiles_used():
            if name not in recipe.models:
                close = difflib.get_close_matches(name, recipe.models, n=1)
                where = (*loc, "config", *_where_is(step.config, name))
                profiles = ", ".join(recipe.models)
                hint = (f"did you mean {close[0]!r}? " if close else "") + f"profiles: {profiles}"
                raise RecipeError(
                    f"unknown model profile {name!r}",
                    path=path,
                    line=line_for(lines, where),
                    field=dotted(where),
                    hint=hint,
                )
        for role in generator.prompt_roles():
            check_prompt(role)
        if getattr(cls, "path_fields", ()) and step.from_ is None:
            _check_files(recipe, generator, i, path, lines)
        if step.from_ is not None:
            upstream = next(s for s in recipe.steps if s.name == step.from_)
            if get_generator(upstream.generator).output != "sft":
                raise RecipeError(
                    f"step {step.from_!r} does not produce dialogues",
                    path=path,
                    line=line_for(lines, (*loc, "from")),
                    field=f"steps[{i}].from",
                    hint="'from' takes a step whose generator outputs sft rows",
                )
    if not recipe.loaded_seeds:
        raise RecipeError("the seeds files hold no seeds", path=path, field="seeds")
