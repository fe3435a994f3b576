"""The runner: a recipe becomes a RUN_DIR, resumably.

Splits are assigned per seed before anything is generated (stratified by topic, from the recipe
seed) and reused by every step and by evaluation, so no seed's paraphrases sit in both train and
test. Steps run in recipe order, each fed its ``from`` step's rows (one step's scheduling,
journaling, filtering and counts: :mod:`synthgen.step`); re-running on the same RUN_DIR skips
journaled items and refuses when the recipe's fingerprint changed. Finalize writes the Hub-layout
dataset atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .cache import ResponseCache
from .client import ChatClient
from .errors import ResumeError
from .generator import Generator, GeneratorContext, item_seed
from .judge import verify_claims
from .limits import Limits
from .quality import Rejection, check_dialogue, check_preference
from .recipe import Recipe, Step
from .records import DialogueRow, PreferenceRow
from .rundir import write_run_dir
from .seeds import Seed
from .settings import cache_path
from .step import StepCounts, StepRun
from .usage import TOKEN_COUNTER, UsageMeter

__all__ = ["RunResult", "StepCounts", "assign_splits", "context_for", "run"]

STATE_DIR = ".synthgen"


def assign_splits(seeds: Sequence[Seed], test_fraction: float, recipe_seed: int) -> dict[str, str]:
    """Per-seed train/test, stratified by topic; a topic with one seed stays in train."""
    splits: dict[str, str] = {}
    by_topic: dict[str, list[Seed]] = {}
    for seed in seeds:
        by_topic.setdefault(seed.topic, []).append(seed)
    for topic, members in sorted(by_topic.items()):
        ordered = sorted(members, key=lambda s: item_seed(recipe_seed, "split", topic, s.id))
        n_test = round(len(members) * test_fraction) if len(members) > 1 else 0
        for i, seed in enumerate(ordered):
            splits[seed.id] = "test" if i < n_test else "train"
    return splits


@dataclass
class RunResult:
    """What ``run.json`` holds. ``usage``/``cost_usd`` sum every journaled item, so they are the
    dataset's tokens and cost across all invocations (resumes included); ``usage_this_run`` is this
    invocation's alone."""

    run_dir: str
    recipe: str
    fingerprint: str
    offline: bool
    steps: dict[str, StepCounts]
    usage: dict[str, Any]
    cost_usd: float
    usage_this_run: dict[str, Any]
    seconds: float
    splits: dict[str, int]
    prompts: dict[str, Any]
    versions: dict[str, str]
    response_models: list[str]
    token_counter: str
    budget: dict[str, Any]
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Runner:
    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        *,
        offline: bool,
        limit: int | None,
        concurrency: int | None,
        use_cache: bool,
        progress: bool,
    ) -> None:
        self.recipe, self.out, self.offline, self.limit, self.progress = recipe, out, offline, limit, progress
        self.state = out / STATE_DIR
        profiles = {
            n: p.model_copy(update={"max_concurrency": concurrency}) if concurrency else p
            for n, p in recipe.models.items()
        }
        self.profiles = profiles
        self.workers = 2 * max(p.max_concurrency for p in profiles.values())
        self.client = ChatClient(
            cache=ResponseCache(cache_path(), enabled=use_cache),
            meter=UsageMeter(max_usd=recipe.budget.max_usd),
            limits=Limits(),
            offline=offline,
        )
        self.splits: dict[str, str] = {}
        self.seeds = {s.id: s for s in recipe.loaded_seeds}
        self.budget_exhausted = False
        self._reports: dict[str, list[dict[str, Any]]] = {"failed": [], "rejected": []}

    def check(self, output: str, row: dict[str, Any]) -> Any:
        seeds = self.seeds
        language, config = self.recipe.language, self.recipe.quality
        if output == "sft":
            DialogueRow.model_validate(row)
            return check_dialogue(row, seeds=seeds, language=language, config=config)
        if output == "prefs":
            PreferenceRow.model_validate(row)
            return check_preference(row, seeds=seeds, language=language, config=config)
        Seed.model_validate({k: v for k, v in row.items() if k != "__split"})
        return None

    async def verify_claims(
        self, output: str, row: dict[str, Any], ctx: GeneratorContext
    ) -> Rejection | None:
        """Claim-level check of every assistant turn (sft) or the chosen answer (prefs) against its facts."""
        quality = self.recipe.quality
        assert quality.verify_claims is not None
        if output == "sft":
            answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        elif output == "prefs":
            answers = [row["chosen"][0]["content"]]
        else:
            return None
        reference = "\n\n".join(self.seeds[s].answer for s in row["seed_ids"] if s in self.seeds)
        checks = await asyncio.gather(
            *(
                verify_claims(
                    self.client,
                    self.profiles[quality.verify_claims],
                    answer=answer,
                    reference=reference,
                    prompts=ctx.prompts,
                    language=self.recipe.language,
                    version=ctx.version,
                )
                for answer in answers
            )
        )
        unsupported = [c for check in checks for c in check.unsupported]
        if len(unsupported) > quality.max_unsupported_claims:
            detail = "; ".join(f"{c.verdict}: {c.claim}" for c in unsupported[:3])
            return Rejection("unsupported_claim", detail[:500])
        return None

    def report(self, kind: str, step: str, item: str, reason: str, detail: str, row: Any = None) -> None:
        record = {"step": step, "item": item, "reason": reason, "detail": detail}
        if row is not None:
            record["row"] = row
        self._reports[kind].append(record)

    def prepare(self) -> None:
        """Create or resume the RUN_DIR state; refuse a resume under a different recipe."""
        self.state.mkdir(parents=True, exist_ok=True)
        state_file = self.state / "state.json"
        fingerprint = self.recipe.fingerprint()
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state["fingerprint"] != fingerprint:
                raise ResumeError(
                    f"{self.out} was made by a different recipe (fingerprint {state['fingerprint'][:12]} != "
                    f"{fingerprint[:12]}): {_what_changed(state.get('recipe', {}), self._recipe_dump())}",
                    path=str(self.out),
                    hint="use a new --out, or restore the recipe to resume",
                )
            if state.get("offline") != self.offline:
                raise ResumeError(
                    f"{self.out} was made {'offline' if state.get('offline') else 'online'}",
                    path=str(self.out),
                    hint="use a new --out, or match --offline",
                )
            self.splits = json.loads((self.state / "splits.json").read_text())
        else:
            self.splits = assign_splits(
                self.recipe.loaded_seeds, self.recipe.output.test_fraction, self.recipe.seed
            )
            _write_atomic(self.state / "splits.json", json.dumps(self.splits, indent=1, sort_keys=True))
            _write_atomic(
                state_file,
                json.dumps(
                    {
                        "fingerprint": fingerprint,
                        "offline": self.offline,
                        "recipe": self._recipe_dump(),
                        "created": time.time(),
                    },
                    indent=1,
                ),
            )

    def _recipe_dump(self) -> dict[str, Any]:
        return self.recipe.portable()

    async def run(self) -> RunResult:
        started = time.monotonic()
        self.prepare()
        prompts = self.recipe.prompt_library()
        outputs: dict[str, list[dict[str, Any]]] = {}
        steps: dict[str, StepCounts] = {}
        dataset_usage = UsageMeter()  # journaled: every invocation that built this RUN_DIR
        async with self.client:
            for step in self.recipe.steps:
                generator = self.recipe.generator(step)
                step_run = StepRun(self, step, generator)
                upstream = outputs.get(step.from_, []) if step.from_ else []
                items = step_run.plan(upstream)
                ctx = context_for(self.recipe, self.client, step, generator, upstream, self.profiles, prompts)
                t0 = time.monotonic()
                if not self.budget_exhausted:
                    await step_run.execute(items, ctx)
                step_run.counts.seconds = round(time.monotonic() - t0, 3)
                outputs[step.name] = step_run.collect(items)
                step_run.counts.usage = step_run.usage.snapshot()["total"]
                steps[step.name] = step_run.counts
                dataset_usage.merge(step_run.usage.snapshot())
        meter = self.client.meter
        result = RunResult(
            run_dir=self.out.name,  # the folder's name only: an absolute path can name a person
            recipe=self.recipe.name,
            fingerprint=self.recipe.fingerprint(),
            offline=self.offline,
            steps=steps,
            usage=dataset_usage.snapshot(),
            cost_usd=round(dataset_usage.spent_usd, 6),
            usage_this_run=meter.snapshot(),
            seconds=round(time.monotonic() - started, 3),
            splits=dict(Counter(self.splits.values())),
            prompts=prompts.hashes(),
            versions=_versions(self.recipe),
            response_models=sorted(set(dataset_usage.by_model) | set(dataset_usage.cached_by_model)),
            token_counter=TOKEN_COUNTER,
            budget={"max_usd": self.recipe.budget.max_usd, "exhausted": self.budget_exhausted},
            complete=all(c.not_started == 0 for c in steps.values()),
        )
        outputs_by_kind: dict[str, list[dict[str, Any]]] = {}
        for step in self.recipe.steps:
            outputs_by_kind.setdefault(self.recipe.generator(step).output, []).extend(outputs[step.name])
        write_run_dir(self.out, self.recipe, result, outputs_by_kind, self.splits, self._reports)
        return result


def context_for(
    recipe: Recipe,
    client: ChatClient,
    step: Step,
    generator: Generator,
    upstream: Sequence[Mapping[str, Any]],
    profiles: Mapping[str, Any],
    prompts: Any,
) -> GeneratorContext:
    """The context a step's generator sees (shared by run, estimate and validate's dry run)."""
    return GeneratorContext(
        client=client,
        profiles=profiles,
        seeds={s.id: s for s in recipe.loaded_seeds},
        personas=recipe.loaded_personas,
        prompts=prompts,
        language=recipe.language,
        system_prompt=recipe.system_prompt,
        grounding=recipe.grounding,
        recipe_seed=recipe.seed,
        step=step.name,
        upstream={step.from_: upstream} if step.from_ else {},
        version=f"{generator.name}/{generator.version}",
    )


def _what_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "changed: " + (", ".join(keys) if keys else "seeds or prompt files")


def _versions(recipe: Recipe) -> dict[str, str]:
    from importlib.metadata import version

    versions = {"synthgen": __version__}
    for package in ("openai", "datasets", "huggingface-hub", "pydantic", "tenacity"):
        with contextlib.suppress(Exception):
            versions[package] = version(package)
    for step in recipe.steps:
        generator = recipe.generator(step)
        versions[f"generator:{generator.name}"] = generator.version
    return versions


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(
    recipe: Recipe,
    *,
    out: str | Path,
    offline: bool = False,
    limit: int | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
    progress: bool = False,
    confirm: Callable[[float], bool] | None = None,
) -> RunResult:
    """Generate the recipe's datasets into ``out`` (resuming what is already there)."""
    del confirm  # reserved: the CLI asks before calling run when the estimate exceeds the budget
    runner = _Runner(
        recipe,
        Path(out),
        offline=offline,
        limit=limit,
        concurrency=concurrency,
        use_cache=use_cache,
        progress=progress,
    )
    try:
        return asyncio.run(runner.run())  # the client closes its cache on the way out
    finally:
        shutil.rmtree(Path(out) / STATE_DIR / "tmp", ignore_errors=True)
