"""Recipes: the declarative description of a dataset (seeds, models, steps, output, budget).

``load_recipe`` validates everything that can be checked offline before any money is spent: the
schema (``extra="forbid"``, so a typo is an error, not a silently ignored key), paths (resolved
relative to the recipe file), the seeds, each step's ``config`` against its generator's ``Config``,
profile names, ``from`` references and prompt templates. Errors read
``recipe.yaml:12: steps[0].config.turns: ... (hint)``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, RecipeError, SeedError
from .generator import Generator
from .profile import ModelProfile
from .prompts import PromptLibrary
from .quality import QualityConfig
from .registry import get_generator
from .seeds import Persona, Seed, load_personas, load_seeds, seeds_fingerprint

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


class Output(BaseModel):
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
    output: Output = Field(default_factory=Output)
    budget: Budget = Field(default_factory=Budget)

    path: Path | None = Field(default=None, exclude=True)
    loaded_seeds: list[Seed] = Field(default_factory=list, exclude=True)
    loaded_personas: list[Persona] = Field(default_factory=list, exclude=True)

    @field_validator("seeds", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("models", mode="before")
    @classmethod
    def _name_profiles(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {**v, "name": k} if isinstance(v, dict) else v for k, v in value.items()}
        return value

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
        cls = get_generator(step.generator)
        return cls(cls.Config.model_validate(step.config))

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

    def prompt_library(self) -> PromptLibrary:
        return PromptLibrary(self.language, self.prompts)


# --- loading ---------------------------------------------------------------------------------


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Field path -> 1-based line, from the YAML node tree (pydantic locations map onto it)."""
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, (*path, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _parse_field(field: str) -> tuple[str | int, ...]:
    """``steps[1].name`` -> ("steps", 1, "name"): the inverse of :func:`_dotted`, for line lookups."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", field) if p)


def _dotted(loc: Iterator[str | int] | tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_PATTERN_HINTS = {
    "name": "use lowercase letters, digits, - and _, starting with a letter or digit",
    "language": "use a two-letter ISO 639-1 code such as 'es' or 'en'",
    "api_key_env": "write the NAME of the environment variable holding the key, e.g. OPENAI_API_KEY",
    "repo_id": "write it as org/name",
}
_FIELD_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.\w+|\[\d+\])*$")


def _hint(error: Mapping[str, Any], known: list[str]) -> str | None:
    if error["type"] == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(str(error["loc"][-1]) if error["loc"] else "")
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        return (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {', '.join(known)}"
    if error["type"] == "missing":
        return "add it to the recipe"
    return None


def _fields_of(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Allowed keys at a location, for 'did you mean' on unknown keys."""
    current: Any = model
    in_dict = False
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        if in_dict:  # the key of a dict[str, Model] field, e.g. a profile name under models
            in_dict = False
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        in_dict = getattr(annotation, "__origin__", None) is dict
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = candidates[0] if candidates else None
    if current is None:
        return []
    return sorted(
        name if not f.alias else f.alias
        for name, f in current.model_fields.items()
        if name not in ("path", "loaded_seeds", "loaded_personas")
    )


def _raise_validation(
    exc: ValidationError,
    path: Path,
    lines: dict[tuple[str | int, ...], int],
    model: type[BaseModel],
    prefix: tuple[str | int, ...] = (),
) -> None:
    first: RecipeError | None = None
    messages = []
    for error in exc.errors():
        loc = (*prefix, *error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        field = _dotted(loc)
        head = msg.split(": ", 1)[0]
        named = _FIELD_PATH.match(head) and head != field and head.startswith(field)
        if head != msg and named and (field or re.split(r"[.\[]", head)[0] in model.model_fields):
            # a model validator names the precise field in its message (steps[1].from, models.x.temperature)
            field, msg = msg.split(": ", 1)
            loc = _parse_field(field)
        err = RecipeError(
            msg,
            path=path,
            line=_line_for(lines, loc),
            field=field or None,
            hint=_hint(error, _fields_of(model, error["loc"])),
        )
        first = first or err
        messages.append(str(err))
    assert first is not None
    if len(messages) > 1:
        first.args = ("\n".join(messages),)
    raise first


ModelT = TypeVar("ModelT", bound=BaseModel)
Lines = dict[tuple[str | int, ...], int]


def load_yaml_model(path: Path, model: type[ModelT], *, what: str, keys: str) -> tuple[ModelT, Lines]:
    """Read a YAML mapping into ``model``; errors read ``file:line: field: message (hint)``.

    Shared by recipes and eval recipes; returns the field-path -> line map for later checks
    (paths that do not exist, unknown profiles) so they can point at the line too.
    """
    if not path.is_file():
        raise RecipeError(f"{what} file not found", path=path, hint=f"pass the path to a {what} YAML file")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RecipeError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            path=path,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting",
        ) from None
    if not isinstance(data, dict):
        raise RecipeError(f"a {what} is a YAML mapping ({keys}, ...)", path=path)
    lines = _line_map(text)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        _raise_validation(exc, path, lines, model)
        raise  # pragma: no cover


def line_for(lines: Lines, loc: tuple[str | int, ...]) -> int | None:
    """The line of ``loc`` (or of its nearest enclosing key) in a file read by :func:`load_yaml_model`."""
    return _line_for(lines, loc)


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
                line=_line_for(lines, ("seeds", i)),
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
                line=_line_for(lines, ("personas",)),
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
    library = recipe.prompt_library()

    def check_prompt(role: str) -> None:
        try:
            library.get(role)
        except ConfigError as exc:
            overridden = exc.path is None and role in recipe.prompts  # the recipe line names the missing file
            line = _line_for(lines, ("prompts", role)) if overridden else exc.line
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
                line=_line_for(lines, (*loc, "generator")),
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
            generator = cls(cls.Config.model_validate(step.config))
        except ValidationError as exc:
            _raise_validation(exc, path, lines, cls.Config, prefix=(*loc, "config"))
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
                    line=_line_for(lines, where),
                    field=_dotted(where),
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
                    line=_line_for(lines, (*loc, "from")),
                    field=f"steps[{i}].from",
                    hint="'from' takes a step whose generator outputs sft rows",
                )
    if not recipe.loaded_seeds:
        raise RecipeError("the seeds files hold no seeds", path=path, field="seeds")
