"""Recipes: the declarative description of a dataset (seeds, models, steps, output, budget).

``load_recipe`` validates everything that can be checked offline before any money is spent: the
schema (``extra="forbid"``, so a typo is an error, not a silently ignored key), paths (resolved
relative to the recipe file), the seeds, each step's ``config`` against its generator's ``Config``,
profile names, ``from`` references and prompt templates. Errors read
``recipe.yaml:12: steps[0].config.turns: ... (hint)`` (the YAML-to-model machinery, shared with eval
recipes, lives in :mod:`synthgen.yamlconfig`; ``load_yaml_model`` and ``line_for`` are re-exported here).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from synthgen.errors import ConfigError, RecipeError, SeedError
from synthgen.generators.base import Generator
from synthgen.generators.registry import get_generator
from synthgen.llm.profile import ModelProfile, name_profiles
from synthgen.prompts import PromptLibrary
from synthgen.quality.filters import QualityConfig
from synthgen.seeds import Persona, Seed, load_personas, load_seeds, seeds_fingerprint
from synthgen.yamlconfig import Lines, dotted, line_for, load_yaml_model, raise_validation

__all__ = ["Recipe", "Step", "line_for", "load_recipe", "load_yaml_model"]

_SLUG = r"^[a-z0-9][a-z0-9_-]*$"
LICENSES = {
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc0-1.0",
    "apache-2.0",
    "mit",
    "odc-by",
    "cdla-permissive-2.0",
    "other",
    "unknown",
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=_SLUG)
    generator: str = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from")
    config: dict[str, Any] = Field(default_factory=dict)


class HubOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_id: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    license: str = "cc-by-4.0"
    hub: HubOutput = Field(default_factory=HubOutput)
    student_code_pattern: str | None = Field(default=None, description="regex of the faculty's student codes")

    @field_validator("license")
    @classmethod
    def _license(cls, value: str) -> str:
        if value not in LICENSES:
            close = difflib.get_close_matches(value, LICENSES, n=1)
            raise ValueError(
                f"unknown license id {value!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            )
        return value


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_usd: float | None = Field(default=None, gt=0)


class Recipe(BaseModel):
    """A validated recipe; paths are absolute once loaded."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_SLUG)
    version: int = Field(default=1, ge=1)
    description: str = ""
    language: str = Field(default="es", pattern=r"^[a-z]{2}$")
    seed: int = 0
    seeds: list[Path] = Field(min_length=1)
    personas: Path | None = None
    grounding: Literal["closed_book", "in_context"] = "closed_book"
    system_prompt: str = Field(min_length=1)
    models: dict[str, ModelProfile] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    quality: QualityConfig = Field(default_factory=lambda: QualityConfig())
    prompts: dict[str, Path] = Field(default_factory=dict)
    output: OutputConfig = Field(default_factory=OutputConfig)
    budget: Budget = Field(default_factory=Budget)

    path: Path | None = Field(default=None, exclude=True)
    loaded_seeds: list[Seed] = Field(default_factory=list, exclude=True)
    loaded_personas: list[Persona] = Field(default_factory=list, exclude=True)
    _generators: dict[str, Generator] = PrivateAttr(default_factory=dict)

    @field_validator("seeds", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str | Path) else value

    _name_profiles = field_validator("models", mode="before")(name_profiles)

    @model_validator(mode="after")
    def _steps_refer(self) -> Recipe:
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.name in seen:
                raise ValueError(
                    f"steps[{i}].name: duplicate step name {step.name!r} (names key the journal)"
                )
            if step.from_ is not None and step.from_ not in seen:
                raise ValueError(
                    f"steps[{i}].from: {step.from_!r} is not an earlier step (earlier: {sorted(seen) or 'none'})"
                )
            seen.add(step.name)
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def generator(self, step: Step) -> Generator:
        """The step's generator, resolved once (entry point + Config validation) and kept."""
        generator = self._generators.get(step.name)
        if generator is None or generator.name != step.generator:
            cls = get_generator(step.generator)
            generator = cls(cls.Config.model_validate(step.config))
            generator.base_dir = self.base_dir
            self._generators[step.name] = generator
        return generator

    def fingerprint(self) -> str:
        """What determines the rows: changing it refuses a resume. Limits, budget and hub don't count."""
        models = {
            name: {
                **p.model_dump(include={"model", "base_url", "extra_body", "structured_output"}),
                **p.sampling(),
            }
            for name, p in self.models.items()
        }
        # every template a step renders (built-in or overridden) and every generator's version: a new
        # synthgen release that changes a prompt or a generator must not be resumed into an old run
        library = self.prompt_library()
        generators = [self.generator(s) for s in self.steps]
        prompts = {role: library.get(role).sha256 for g in generators for role in g.prompt_roles()}
        blob = {
            "generators": {
                s.name: f"{g.name}/{g.version}" for s, g in zip(self.steps, generators, strict=True)
            },
            "language": self.language,
            "seed": self.seed,
            "seeds": seeds_fingerprint(self.loaded_seeds),
            "grounding": self.grounding,
            "system_prompt": self.system_prompt,
            "models": models,
            "steps": [s.model_dump(by_alias=True) for s in self.steps],
            "quality": self.quality.model_dump(),
            "prompts": prompts,
            "test_fraction": self.output.test_fraction,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def portable(self) -> dict[str, Any]:
        """The recipe as written down outside this machine (card, RUN_DIR state): every path relative to
        the recipe file, so no local directory (a home folder can name a person) is published."""
        data: dict[str, Any] = json.loads(self.model_dump_json(by_alias=True, exclude_unset=True))

        def rel(p: str) -> str:
            try:
                return os.path.relpath(p, self.base_dir)
            except ValueError:  # another drive on Windows
                return Path(p).name

        data = {"name": data.pop("name"), "version": self.version, **data}
        data["seeds"] = [rel(p) for p in data["seeds"]]
        if data.get("personas"):
            data["personas"] = rel(data["personas"])
        if data.get("prompts"):
            data["prompts"] = {k: rel(v) for k, v in data["prompts"].items()}
        for step in data.get("steps", []):
            for key, value in step.get("config", {}).items():
                if isinstance(value, str) and os.path.isabs(value):
                    step["config"][key] = rel(value)
                elif isinstance(value, list):
                    step["config"][key] = [
                        rel(v) if isinstance(v, str) and os.path.isabs(v) else v for v in value
                    ]
        return data

    def prompt_library(self) -> PromptLibrary:
        """The templates every step renders: recipe overrides, then plugin packages, then synthgen's."""
        packages: dict[str, str] = {}
        for step in self.steps:
            try:
                generator = self.generator(step)
            except (ConfigError, ValidationError):
                continue  # reported, with its line, where the step itself is checked
            if generator.prompt_package:
                for role in generator.prompt_roles():
                    packages.setdefault(role, generator.prompt_package)
        return PromptLibrary(self.language, self.prompts, packages)


# --- loading ---------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read, validate and resolve a recipe; raise :class:`RecipeError` (or SeedError) on any problem."""
    path = Path(path)
    recipe, lines = load_yaml_model(path, Recipe, what="recipe", keys="name, seeds, models, steps")
    base = path.resolve().parent
    recipe.path = path.resolve()
    recipe.seeds = [(base / p).resolve() for p in recipe.seeds]
    recipe.prompts = {k: (base / p).resolve() for k, p in recipe.prompts.items()}
    for i, seeds_path in enumerate(recipe.seeds):
        if not seeds_path.is_file():
            raise RecipeError(
                f"seeds file not found: {seeds_path}",
                path=path,
                line=line_for(lines, ("seeds", i)),
                field="seeds",
                hint="paths are relative to the recipe file",
            )
    seeds: list[Seed] = []
    for seeds_path in recipe.seeds:
        seeds.extend(load_seeds(seeds_path, language=recipe.language))
    ids = [s.id for s in seeds]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SeedError(
            f"seed id {dup!r} appears in two seeds files",
            path=path,
            field="seeds",
            hint="ids must be unique across all files of a recipe",
        )
    recipe.loaded_seeds = seeds
    personas = recipe.personas
    if personas is None:
        default = recipe.seeds[0].parent / "personas.yaml"
        personas = default if default.is_file() else None
    else:
        personas = (base / personas).resolve()
        if not personas.is_file():
            raise RecipeError(
                f"personas file not found: {personas}",
                path=path,
                line=line_for(lines, ("personas",)),
                field="personas",
                hint="paths are relative to the recipe file",
            )
    recipe.personas = personas
    recipe.loaded_personas = load_personas(personas) if personas else []
    _check_steps(recipe, path, lines)
    return recipe


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


def _check_steps(recipe: Recipe, path: Path, lines: Lines) -> None:
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
