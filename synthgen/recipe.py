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
import itertools
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

from synthgen.errors import ConfigError, RecipeError
from synthgen.generators.base import Generator
from synthgen.generators.registry import get_generator
from synthgen.llm.profile import ModelProfile, name_profiles
from synthgen.prompts import PromptLibrary
from synthgen.quality.filters import QualityConfig
from synthgen.seeds import Persona, Seed, load_personas, load_seeds, seeds_fingerprint
from synthgen.yamlconfig import Lines, dotted, line_for, load_yaml_model, raise_validation, undotted

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    repo_id: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_usd: float | None = Field(default=None, gt=0)


class Recipe(BaseModel):
    """A validated recipe; paths are absolute once loaded."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    max_failure_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="a run whose step fails a larger share of its items exits 1 and keeps the old dataset",
    )

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

    def fingerprint(self, *, legacy: bool = False) -> str:
        """What determines the rows: a RUN_DIR made under another fingerprint refuses to resume.

        In: every generator's name and version, each step's config and ``from``, the seeds' content,
        the content of every file a generator reads (documents), the hashes of every prompt template a
        step renders, language, seed, grounding, system prompt, quality settings, test fraction, and
        per model profile what changes an answer (model, sampling parameters, extra_body,
        structured_output). Out: whatever only decides how the same rows are fetched or paid for
        (base_url, api_key_env, rate limits, concurrency, timeouts, retries, prices, budget, hub):
        fixing one of those resumes the same RUN_DIR. ``legacy`` is the first release's fingerprint
        (base_url in, files out), accepted on resume so RUN_DIRs made by it keep resuming.
        """
        fields = {"model", "extra_body", "structured_output"} | ({"base_url"} if legacy else set())
        models = {name: {**p.model_dump(include=fields), **p.sampling()} for name, p in self.models.items()}
        # every template a step renders (built-in or overridden) and every generator's version: a new
        # synthgen release that changes a prompt or a generator must not be resumed into an old run
        library = self.prompt_library()
        generators = [self.generator(s) for s in self.steps]
        prompts = {role: library.get(role).sha256 for g in generators for role in g.prompt_roles()}
        blob: dict[str, Any] = {
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
        if not legacy:
            blob["inputs"] = {
                s.name: {self._relative(path): _sha256(path) for path in g.inputs()}
                for s, g in zip(self.steps, generators, strict=True)
                if g.inputs()
            }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def _relative(self, path: str | Path) -> str:
        try:
            return os.path.relpath(path, self.base_dir)
        except ValueError:  # another drive on Windows
            return Path(path).name

    def portable(self) -> dict[str, Any]:
        """The recipe as written down outside this machine (card, RUN_DIR state): every path relative to
        the recipe file, so no local directory (a home folder can name a person) is published."""
        data: dict[str, Any] = json.loads(self.model_dump_json(by_alias=True, exclude_unset=True))
        rel = self._relative

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- loading ---------------------------------------------------------------------------------


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
    confine = None if allow_outside_paths else _Confinement(recipe, path, lines)
    if confine is not None:
        if personas is not None:
            confine.check(personas, ("personas",))
        for role, prompt in recipe.prompts.items():
            confine.check(prompt, ("prompts", role))
    recipe.loaded_personas = load_personas(personas) if personas else []
    _check_steps(recipe, path, lines, confine)
    return recipe


class _Confinement:
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


def _fixed_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: where the pattern can reach at most."""
    parts = Path(pattern).parts
    fixed = [p for p in itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts)]
    return str(Path(*fixed)) if fixed else pattern


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


def _check_steps(recipe: Recipe, path: Path, lines: Lines, confine: _Confinement | None) -> None:
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
                    confine.check(_fixed_prefix(pattern), (*loc, "config", field))
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
