"""The recipe model: a dataset's declarative description (seeds, models, steps, output, budget).

``extra="forbid"`` everywhere, so a typo is an error, not a silently ignored key. A loaded recipe
resolves each step's generator once and says what determines its rows (:meth:`Recipe.fingerprint`)
and how it is written down outside this machine (:meth:`Recipe.portable`).
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

from synthgen.errors import ConfigError
from synthgen.generators.base import Generator
from synthgen.generators.registry import get_generator
from synthgen.llm.profile import ModelProfile, name_profiles
from synthgen.prompts import PromptLibrary
from synthgen.quality.filters import QualityConfig
from synthgen.seeds import Persona, Seed, seeds_fingerprint

__all__ = ["LICENSES", "Budget", "HubOutput", "OutputConfig", "Recipe", "Step"]

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
    require_review: bool = Field(
        default=False,
        description="publish refuses unless a person reviewed every published row (synthgen review)",
    )

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
        ``structured_output: auto`` counts as ``json_schema``, the first release's default: auto
        chooses json_schema wherever the server enforces it, and recipes that never set the field
        keep their fingerprint.
        """
        fields = {"model", "extra_body", "structured_output"} | ({"base_url"} if legacy else set())
        models = {name: {**p.model_dump(include=fields), **p.sampling()} for name, p in self.models.items()}
        for dumped in models.values():
            if dumped["structured_output"] == "auto":
                dumped["structured_output"] = "json_schema"
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
            "quality": _quality_blob(self.quality),
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


#: quality settings added after the first release: fingerprinted only when set away from their default,
#: so upgrading synthgen does not turn every existing RUN_DIR into "a different recipe"
_NEWER_QUALITY_FIELDS = ("check_topic",)


def _quality_blob(quality: QualityConfig) -> dict[str, Any]:
    blob = quality.model_dump()
    for name in _NEWER_QUALITY_FIELDS:
        if blob[name] == QualityConfig.model_fields[name].default:
            del blob[name]
    return blob


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- loading ---------------------------------------------------------------------------------
