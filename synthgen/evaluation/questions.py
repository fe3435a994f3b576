"""The four evaluation question sets, built from a RUN_DIR and its recipe's seeds.

* ``paraphrases``: trained (train-split) seeds asked in new words, written by the ``paraphrase``
  prompt (not the student simulator's) and a profile of your choice; a paraphrase that is a
  near-duplicate of a training user turn (or of the seed question) measures memorisation, not
  generalisation: it is dropped, or kept and flagged (``on_overlap``).
* ``heldout``: the test-split seeds the runner assigned before generation: never trained.
* ``out_of_scope``: a file of questions the assistant must decline and refer to the office.
* ``real``: real student queries (text, one per line, or CSV with ``question`` and optional
  ``topic``); repeats among them are dropped, near-duplicates of seed questions flagged; each gets
  the seeds most related to it as the judge's facts (and its topic, when the file gives none).

Every question has a cluster for the bootstrap: its seed (a seed's paraphrases are not independent
evidence), or itself when no seed stands behind it.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from synthgen.determinism import item_seed
from synthgen.errors import CompletionFailed, ConfigError
from synthgen.evaluation.candidates import VERSION
from synthgen.evaluation.recipe import HeldOut, Modes, Paraphrases, QuestionFile, QuestionSets, RealQueries
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from synthgen.quality.dedup import NearDuplicates
from synthgen.quality.text import tokenize
from synthgen.recipe import Recipe
from synthgen.rundir import RunDir
from synthgen.seeds import Seed

if TYPE_CHECKING:
    from synthgen.evaluation.recipe import EvalRecipe

__all__ = ["Modes", "Question", "QuestionSets", "RunData", "build_sets", "read_run_dir"]

RELATED = 2  # topic seeds added to a seed's facts, as the preference generator's default
RETRIEVED = 3  # seeds shown as facts for a real query


class Paraphrase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="the rewritten question")


@dataclass(frozen=True)
class Question:
    id: str
    set: str
    text: str
    cluster: str
    topic: str
    seed_id: str | None = None
    fact_ids: tuple[str, ...] = ()  # seeds whose answers are the facts (the own seed first)
    reference: str = ""  # the office's gold answer; empty when none applies
    flags: tuple[str, ...] = ()
    follow_up: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fact_ids": list(self.fact_ids), "flags": list(self.flags)}


@dataclass
class RunData:
    """What evaluation needs from a RUN_DIR."""

    path: Path
    splits: dict[str, str]
    train_turns: list[str]
    labelling_models: set[str]
    notes: list[str] = field(default_factory=list)  # warnings about the RUN_DIR


@dataclass
class Sets:
    questions: list[Question] = field(default_factory=list)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def read_run_dir(path: Path, *, recipe: Recipe, eval_path: Path | None = None) -> RunData:
    """Splits, training user turns and the preference judge's model; a clear error when missing."""

    command = f"synthgen run {recipe.path or 'RECIPE'} --out {path}"
    if not path.is_dir():
        raise ConfigError(
            f"RUN_DIR not found: {path}",
            path=eval_path,
            field="run_dir",
            hint=f"generate it first: `{command}`, adding --offline for the demo",
        )
    rd = RunDir(path)
    splits = rd.read_splits()
    if not splits:
        raise ConfigError(
            f"{path} has no seed splits (.synthgen/splits.json or data/seeds)",
            path=eval_path,
            field="run_dir",
            hint=f"is it a RUN_DIR? `{command}` makes one",
        )
    turns: list[str] = []
    for row in rd.read_rows("sft", "train", columns=["messages"]):
        turns.extend(str(m["content"]) for m in row["messages"] if m["role"] == "user")
    models: set[str] = set()
    for row in rd.read_rows("prefs"):
        if row.get("judge_model"):
            models.add(str(row["judge_model"]))
        if row.get("prompt") and row["split"] == "train":
            turns.extend(str(m["content"]) for m in row["prompt"] if m["role"] == "user")
    for step in recipe.steps:  # the judge the recipe configured, even when no pair was kept
        judge = getattr(recipe.generator(step).config, "judge", None)
        if recipe.generator(step).output == "prefs" and judge in recipe.models:
            models.add(recipe.models[judge].model)
    unknown = sorted(s.id for s in recipe.loaded_seeds if s.id not in splits)
    notes = [
        f"{len(unknown)} seed(s) of the recipe are not in {path}'s splits (e.g. {unknown[0]}): the recipe "
        "changed since the run; they are in no question set"
    ] if unknown else []  # fmt: skip
    return RunData(path=path, splits=splits, train_turns=turns, labelling_models=models, notes=notes)


def _sample(items: list[Any], limit: int | None, seed: int, kind: str, key: Any) -> list[Any]:
    if limit is None or len(items) <= limit:
        return items
    keep = set(sorted(range(len(items)), key=lambda i: item_seed(seed, kind, str(key(items[i]))))[:limit])
    return [x for i, x in enumerate(items) if i in keep]


def _related(seed: Seed, topic: Sequence[Seed], recipe_seed: int) -> tuple[str, ...]:
    """The seed and the ``RELATED`` others of its ``topic`` (the topic's seeds) first by hash: a
    partial sort of the topic, not a scan of all seeds per question."""
    pool = heapq.nsmallest(
        RELATED,
        (s for s in topic if s.id != seed.id),
        key=lambda s: item_seed(recipe_seed, "related", seed.id, s.id),
    )
    return (seed.id, *(s.id for s in pool))


def _words(text: str) -> set[str]:
    return {w for w in tokenize(text) if len(w) > 3}


def _read_questions(path: Path) -> list[tuple[str, str | None]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() != ".csv":
        return [
            (line.strip(), None)
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    reader = csv.DictReader(text.splitlines())
    if "question" not in (reader.fieldnames or []):
        raise ConfigError(
            "a questions CSV needs a 'question' column", path=path, line=1, hint="optional: topic"
        )
    return [
        (row["question"].strip(), (row.get("topic") or "").strip() or None)
        for row in reader
        if (row.get("question") or "").strip()
    ]


class _Builder:
    def __init__(
        self, ev: EvalRecipe, run: RunData, client: ChatClient, prompts: PromptLibrary, language: str
    ) -> None:
        self.ev, self.run, self.client, self.prompts, self.language = ev, run, client, prompts, language
        self.seeds = list(ev.generation.loaded_seeds)
        self.topics: dict[str, list[Seed]] = {}  # built once: a question's facts come from its topic
        for seed in self.seeds:
            self.topics.setdefault(seed.topic, []).append(seed)
        self.out = Sets()

    def follow_up(self, qid: str) -> str | None:
        follow_ups = self.ev.modes.follow_ups
        return follow_ups[item_seed(self.ev.seed, "follow_up", qid) % len(follow_ups)] if follow_ups else None

    def add(self, name: str, questions: list[Question], dropped: int = 0, note: str = "") -> None:
        self.out.questions.extend(questions)
        self.out.stats[name] = {
            "questions": len(questions),
            "clusters": len({q.cluster for q in questions}),
            "flagged": sum(bool(q.flags) for q in questions),
            "dropped": dropped,
            "note": note,
        }

    def drop(self, set_name: str, qid: str, text: str, reason: str) -> None:
        self.out.dropped.append({"id": qid, "set": set_name, "text": text, "dropped": reason})

    def seed_question(
        self, qid: str, set_name: str, seed: Seed, text: str, flags: tuple[str, ...] = ()
    ) -> Question:
        """A question that ``seed`` answers: its gold answer is the reference, its cluster the seed."""
        return Question(
            id=qid, set=set_name, text=text, cluster=seed.id, topic=seed.topic, seed_id=seed.id,
            fact_ids=_related(seed, self.topics[seed.topic], self.ev.seed), reference=seed.answer,
            flags=flags, follow_up=self.follow_up(qid),
        )  # fmt: skip

    def heldout(self, config: HeldOut) -> None:
        test = [s for s in self.seeds if self.run.splits.get(s.id) == "test"]
        chosen = _sample(test, config.max_questions, self.ev.seed, "heldout", lambda s: s.id)
        questions = [self.seed_question(f"heldout:{s.id}", "heldout", s, s.question) for s in chosen]
        self.add("heldout", questions, note=f"{len(test)} test-split seeds" + ("" if test else ": none"))

    async def paraphrases(self, config: Paraphrases, profile: ModelProfile) -> None:
        train = [s for s in self.seeds if self.run.splits.get(s.id) == "train"]
        chosen = _sample(train, config.max_seeds, self.ev.seed, "paraphrases", lambda s: s.id)

        async def write(seed: Seed, k: int) -> str | CompletionFailed:
            content = self.prompts.render("paraphrase", question=seed.question, language=self.language)
            try:
                done = await self.client.complete(
                    [{"role": "user", "content": content}],
                    profile=profile,
                    schema=Paraphrase,
                    sample=k,
                    version=VERSION,
                    call="paraphraser",
                )
            except CompletionFailed as exc:
                return exc
            return str(done.parsed.question).strip()

        jobs = [(s, k) for s in chosen for k in range(config.per_seed)]
        written = await asyncio.gather(*(write(s, k) for s, k in jobs))
        known = NearDuplicates(threshold=config.near_duplicate_threshold)
        texts: dict[str, str] = {}
        for i, turn in enumerate([*self.run.train_turns, *(s.question for s in train)]):
            texts[f"train#{i}"] = turn
            known.add(f"train#{i}", turn)
        questions, dropped = [], 0
        for (seed, k), text in zip(jobs, written, strict=True):
            qid = f"paraphrases:{seed.id}:{k}"
            if isinstance(text, CompletionFailed) or not text:
                reason = f"failed: {text.reason}" if isinstance(text, CompletionFailed) else "empty"
                self.drop("paraphrases", qid, "", reason)
                dropped += 1
                continue
            other = known.add(qid, text)
            flags: tuple[str, ...] = ()
            if other is not None:
                what = "a training turn" if other.startswith("train#") else other
                flags = (f"near-duplicate of {what}: {texts.get(other, other)[:120]}",)
                if config.on_overlap == "drop":
                    self.drop("paraphrases", qid, text, flags[0])
                    dropped += 1
                    continue
            questions.append(self.seed_question(qid, "paraphrases", seed, text, flags))
        note = (
            f"{len(chosen)} train-split seeds x {config.per_seed}; overlap with training: {config.on_overlap}"
        )
        self.add("paraphrases", questions, dropped, note)

    def out_of_scope(self, config: QuestionFile) -> None:
        rows = _sample(
            _read_questions(config.path), config.max_questions, self.ev.seed, "out_of_scope", lambda r: r[0]
        )
        questions = [
            Question(
                id=f"out_of_scope:{i}",
                set="out_of_scope",
                text=text,
                cluster=f"out_of_scope:{i}",
                topic=topic or "out_of_scope",
            )
            for i, (text, topic) in enumerate(rows, start=1)
        ]
        self.add("out_of_scope", questions, note=config.path.name)

    def real(self, config: RealQueries) -> None:
        rows = _sample(
            _read_questions(config.path), config.max_questions, self.ev.seed, "real", lambda r: r[0]
        )
        known = NearDuplicates(threshold=config.near_duplicate_threshold)
        for seed in self.seeds:
            known.add(f"seed:{seed.id}", seed.question)
        seed_words = [(s, _words(f"{s.question} {s.answer}")) for s in self.seeds]
        questions, dropped = [], 0
        for i, (text, topic) in enumerate(rows, start=1):
            qid = f"real:{i}"
            other = known.add(qid, text)
            if other is not None and not other.startswith("seed:"):
                self.drop("real", qid, text, f"repeat of {other}")
                dropped += 1
                continue
            words = _words(text)
            ranked = sorted(seed_words, key=lambda sw: (-len(words & sw[1]), sw[0].id))[:RETRIEVED]
            facts = tuple(s.id for s, w in ranked if words & w)
            best = ranked[0][0].topic if ranked and len(words & ranked[0][1]) >= 2 else "unmatched"
            flags = (f"near-duplicate of seed {other.removeprefix('seed:')}",) if other else ()
            questions.append(
                Question(
                    id=qid,
                    set="real",
                    text=text,
                    cluster=qid,
                    topic=topic or best,
                    fact_ids=facts,
                    flags=flags,
                )
            )
        self.add(
            "real", questions, dropped, note=f"{config.path.name}; near-duplicates of seed questions flagged"
        )


async def build_sets(
    ev: EvalRecipe, run: RunData, client: ChatClient, prompts: PromptLibrary, language: str
) -> Sets:
    """The configured sets, in report order: paraphrases, heldout, out_of_scope, real."""
    builder = _Builder(ev, run, client, prompts, language)
    sets = ev.sets
    if sets.paraphrases is not None:
        await builder.paraphrases(sets.paraphrases, ev.profiles()[sets.paraphrases.profile])
    if sets.heldout is not None:
        builder.heldout(sets.heldout)
    if sets.out_of_scope is not None:
        builder.out_of_scope(sets.out_of_scope)
    if sets.real is not None:
        builder.real(sets.real)
    return builder.out
