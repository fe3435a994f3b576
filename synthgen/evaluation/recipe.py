"""The eval recipe: which candidates answer which question sets, judged how, with what statistics.

An eval recipe::

    name: offline-demo-eval
    recipe: recipe.yaml                 # the generation recipe: seeds, system prompt, model profiles
    run_dir: ../../runs/offline-demo    # its RUN_DIR: the train/test split of every seed
    seed: 13                            # question sampling, blinded label order, bootstrap
    judge: eval-judge                   # a profile of `models` (or of the recipe)
    models: {eval-judge: {model: ..., base_url: ...}, weak: {model: ...}}
    candidates:
      - {name: tuned, endpoint: tuned}                  # OpenAI-compatible server (vLLM, ...)
      - {name: teacher, endpoint: assistant, facts: true}
      - {name: local, model: ../../out/dpo}             # transformers checkpoint or PEFT adapter
      - {name: other, answers: answers.jsonl}           # {"question_id", "answer"} per line
      - {name: rag, endpoint: base, retrieve: {k: 4}}   # top-4 train seeds + regulation chunks
    sets:
      paraphrases: {profile: paraphraser, max_seeds: 20}  # new wording of trained seeds
      heldout: {}                                       # the test split: never trained
      out_of_scope: {path: out_of_scope.txt}            # must be declined and referred
      real: {path: real_queries.csv}                    # coverage of what students really ask
    modes: {single: true, claims: true, pairwise: true, follow_ups: ["¿Y dónde lo entrego?"]}
    bootstrap: {samples: 1000, confidence: 0.95}
    report: {min_topic_questions: 10}                  # smaller topics fold into 'other'
    contamination: {n: 8, threshold: 0.5, drop: false}  # overlap with the training rows

Paths are resolved against the eval recipe's folder; profile names are checked against the eval
recipe's ``models`` and the generation recipe's. Errors read like a recipe's (``file:line: field``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from synthgen.errors import RecipeError
from synthgen.evaluation.candidates import CandidateSpec
from synthgen.evaluation.compare import ReportSettings
from synthgen.evaluation.stats import Bootstrap
from synthgen.llm.profile import ModelProfile, name_profiles
from synthgen.recipe import Recipe, load_recipe
from synthgen.yamlconfig import line_for, load_yaml_model

__all__ = [
    "Contamination",
    "EvalRecipe",
    "HeldOut",
    "Modes",
    "Paraphrases",
    "QuestionFile",
    "QuestionSets",
    "RealQueries",
    "load_eval_recipe",
]


class Paraphrases(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    profile: str = Field(default="judge", description="who writes them: ideally not the student model")
    per_seed: int = Field(default=1, ge=1, le=10)
    max_seeds: int | None = Field(default=30, ge=1)
    near_duplicate_threshold: float = Field(default=0.6, gt=0, le=1)
    on_overlap: Literal["drop", "flag"] = "drop"


class HeldOut(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_questions: int | None = Field(default=None, ge=1)


class QuestionFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Path
    max_questions: int | None = Field(default=None, ge=1)


class RealQueries(QuestionFile):
    near_duplicate_threshold: float = Field(default=0.6, gt=0, le=1)


class QuestionSets(BaseModel):
    """Which sets to build; leave one out (or null) to skip it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    paraphrases: Paraphrases | None = None
    heldout: HeldOut | None = Field(default_factory=HeldOut)
    out_of_scope: QuestionFile | None = None
    real: RealQueries | None = None


class Modes(BaseModel):
    """How the questions are judged; ``follow_ups`` turns seed questions into two-turn dialogues."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    single: bool = Field(default=True, description="1-10 grade of each answer (paraphrases, held-out)")
    claims: bool = Field(default=True, description="claim precision, recall, contradictions vs the gold")
    pairwise: bool = Field(default=True, description="every pair of candidates, both orders")
    follow_ups: list[str] = Field(default_factory=list, description="scripted follow-ups: multi-turn")


SetName = Literal["paraphrases", "heldout", "out_of_scope", "real"]
_UNTRAINED: tuple[SetName, ...] = ("heldout", "out_of_scope", "real")


class Contamination(BaseModel):
    """n-gram overlap of eval questions and references with the training rows
    (:mod:`synthgen.evaluation.contamination`); ``contamination: null`` turns the check off."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: int = Field(default=8, ge=2, le=50, description="words per n-gram")
    threshold: float = Field(default=0.5, gt=0, le=1, description="share of n-grams found in training")
    drop: bool = Field(default=False, description="leave flagged questions out of the sets")
    sets: list[SetName] = Field(
        default_factory=lambda: list(_UNTRAINED),
        description="the sets checked (paraphrases: their reference is trained by construction)",
    )


PARSE_FAILURES = {"invalid_json", "schema", "empty", "length"}


class EvalRecipe(BaseModel):
    """A validated eval recipe; paths are absolute once loaded."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    recipe: Path
    run_dir: Path
    seed: int = 0
    judge: str = "judge"
    models: dict[str, ModelProfile] = Field(default_factory=dict)
    candidates: list[CandidateSpec] = Field(min_length=1)
    sets: QuestionSets = Field(default_factory=QuestionSets)
    modes: Modes = Field(default_factory=Modes)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    report: ReportSettings = Field(default_factory=ReportSettings)
    contamination: Contamination | None = Field(default_factory=Contamination)

    _path: Path | None = PrivateAttr(default=None)
    _recipe: Recipe | None = PrivateAttr(default=None)

    _name_profiles = field_validator("models", mode="before")(name_profiles)

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[CandidateSpec]) -> list[CandidateSpec]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate candidate name {next(n for n in names if names.count(n) > 1)!r}")
        return value

    @property
    def generation(self) -> Recipe:
        assert self._recipe is not None, "load it with load_eval_recipe"
        return self._recipe

    def profiles(self) -> dict[str, ModelProfile]:
        """The generation recipe's profiles, overridden and extended by the eval recipe's ``models``."""
        return {**self.generation.models, **self.models}


def load_eval_recipe(path: str | Path) -> EvalRecipe:
    """Read and validate an eval recipe and the generation recipe it names; errors like the recipe's."""
    path = Path(path)
    ev, lines = load_yaml_model(path, EvalRecipe, what="eval recipe", keys="name, recipe, candidates")
    base = path.resolve().parent

    def resolve(value: Path, loc: tuple[str | int, ...], *, folder: bool = False) -> Path:
        resolved = (base / value).resolve()
        if not (resolved.is_dir() if folder else resolved.is_file()):
            raise RecipeError(
                f"{'folder' if folder else 'file'} not found: {resolved}",
                path=path,
                line=line_for(lines, loc),
                field=".".join(map(str, loc)),
                hint="paths are relative to the eval recipe file",
            )
        return resolved

    ev._path = path.resolve()
    ev.recipe = resolve(ev.recipe, ("recipe",))
    ev.run_dir = (base / ev.run_dir).resolve()  # checked by evaluate: it may not be generated yet
    for i, spec in enumerate(ev.candidates):
        if spec.model is not None:
            spec.model = resolve(spec.model, ("candidates", i, "model"), folder=True)
        if spec.answers is not None:
            spec.answers = resolve(spec.answers, ("candidates", i, "answers"))
        if spec.retrieve is not None and spec.retrieve.documents is not None:
            spec.retrieve.documents = [
                resolve(d, ("candidates", i, "retrieve", "documents", j))
                for j, d in enumerate(spec.retrieve.documents)
            ]
    for name in ("out_of_scope", "real"):
        found = getattr(ev.sets, name)
        if found is not None:
            found.path = resolve(found.path, ("sets", name, "path"))
    ev._recipe = load_recipe(ev.recipe)
    profiles = ev.profiles()
    wanted: list[tuple[str, tuple[str | int, ...]]] = [(ev.judge, ("judge",))]
    wanted += [
        (c.endpoint, ("candidates", i, "endpoint"))
        for i, c in enumerate(ev.candidates)
        if isinstance(c.endpoint, str)
    ]
    if ev.sets.paraphrases is not None:
        wanted.append((ev.sets.paraphrases.profile, ("sets", "paraphrases", "profile")))
    for name, loc in wanted:
        if name not in profiles:
            raise RecipeError(
                f"unknown model profile {name!r}",
                path=path,
                line=line_for(lines, loc),
                field=".".join(map(str, loc)),
                hint=f"profiles (eval models + the recipe's): {', '.join(profiles)}",
            )
    return ev
