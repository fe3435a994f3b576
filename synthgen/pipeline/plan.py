"""The plan of a run: per-seed splits, and for each step its generator, work items and context.

Run, validate and estimate all walk the recipe's steps the same way (plan the items, feed each step
its ``from`` step's rows, build the generator's context): :func:`walk` is that walk, written once,
and each caller says what producing a step's rows means to it (generate and journal everything, try
the first item offline, or simulate every item).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synthgen.determinism import item_seed
from synthgen.generators.base import Generator, GeneratorContext, WorkItem
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from synthgen.recipe import Recipe, Step
from synthgen.seeds import Seed

__all__ = ["StepPlan", "assign_splits", "walk"]

Rows = Sequence[dict[str, Any]]  # a step's rows: a list, or a RowSpool read back from disk


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


@dataclass(frozen=True)
class StepPlan:
    """One step, resolved: its generator, its work items, the upstream rows and splits they were planned from."""

    recipe: Recipe
    step: Step
    generator: Generator
    items: list[WorkItem]
    upstream: Sequence[Mapping[str, Any]]
    skipped: str | None = None  # why the step has nothing to do (its ``from`` step produced no row)
    splits: Mapping[str, str] = field(default_factory=dict)

    def context(
        self, client: ChatClient, profiles: Mapping[str, ModelProfile], prompts: PromptLibrary
    ) -> GeneratorContext:
        """What the step's generator sees: the client, profiles, seeds and the recipe's contract."""
        recipe, step = self.recipe, self.step
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
            upstream={step.from_: self.upstream} if step.from_ else {},
            version=_cache_version(self.generator),
            splits=self.splits,
        )


def _cache_version(generator: Generator) -> str:
    """What the generator puts in the cache key of its calls: nothing (answers shared by request:
    model, messages, sampling, schema, sample) unless it sets ``cache_version`` to keep them apart.
    The generator's ``version`` stays in the recipe fingerprint and run.json; it is out of the key
    because an answer depends on the request alone, and what a version bump changes after the answer
    (post-processing, rejection rules) is applied again to the cached answer."""
    return f"{generator.name}/{generator.cache_version}" if generator.cache_version else ""


async def walk(
    recipe: Recipe,
    splits: Mapping[str, str],
    produce: Callable[[StepPlan], Awaitable[Rows]],
    *,
    limit: int | None = None,
) -> dict[str, Rows]:
    """Plan and ``produce`` every step in recipe order, each fed its ``from`` step's rows; step -> rows."""
    rows: dict[str, Rows] = {}
    for step in recipe.steps:
        generator = recipe.generator(step)
        upstream = rows.get(step.from_, []) if step.from_ else []
        if step.from_ and not upstream:  # never plan from nothing: a generator may fall back to seeds
            skipped = f"its input step {step.from_!r} produced no row"
            rows[step.name] = await produce(
                StepPlan(recipe, step, generator, [], upstream, skipped, splits=splits)
            )
            continue
        items = generator.plan(recipe.loaded_seeds, splits, recipe.seed, step.name, upstream)
        if limit is not None:
            items = items[:limit]
        rows[step.name] = await produce(StepPlan(recipe, step, generator, items, upstream, splits=splits))
    return rows
