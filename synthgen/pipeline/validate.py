"""``synthgen validate``: everything checkable offline, including a dry run of every step.

Loading the recipe checks schema, paths, seeds, generator configs and profile names. The dry run
then sends the first work item of every step through the embedded offline provider with the cache
off, which renders every prompt template against real seeds and validates the rows, so a broken
template fails here rather than after money is spent. Nothing is written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from synthgen.errors import CompletionFailed, ConfigError, RecipeError
from synthgen.generators.base import Rejected
from synthgen.llm.client import ChatClient
from synthgen.pipeline.plan import StepPlan, assign_splits, walk
from synthgen.recipe import Recipe, load_recipe

__all__ = ["dry_run", "validate_recipe"]


async def dry_run(recipe: Recipe) -> dict[str, int]:
    """Generate the first item of each step offline; return planned items per step."""
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    prompts = recipe.prompt_library()
    planned: dict[str, int] = {}
    async with ChatClient(offline=True) as client:

        async def first_item(plan: StepPlan) -> list[Any]:
            step = plan.step
            # a dry run feeds a downstream step only the first item's rows: it plans what its source does
            planned[step.name] = len(plan.items) if not step.from_ else planned[step.from_]
            ctx = plan.context(client, recipe.models, prompts)
            index = recipe.steps.index(step)
            for item in plan.items[:3]:  # a rejected or failed first item says nothing about templates
                try:
                    return await plan.generator.generate(item, ctx)
                except (CompletionFailed, Rejected):
                    continue
                except ConfigError as exc:
                    if exc.path:  # a prompt template: its own file is the place to fix
                        raise
                    # a generator's own check (e.g. config.personas) knows no file: name the recipe step
                    field = f"steps[{index}].{exc.field}" if exc.field else f"steps[{index}]"
                    raise RecipeError(exc.message, path=recipe.path, field=field, hint=exc.hint) from None
            return []

        await walk(recipe, splits, first_item)
    return planned


def validate_recipe(recipe: Recipe | str | Path, *, allow_outside_paths: bool = False) -> str:
    """Validate and dry-run; return a human summary (raise SynthgenError on any problem)."""
    path = recipe.path if isinstance(recipe, Recipe) else recipe
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, allow_outside_paths=allow_outside_paths)
    planned = asyncio.run(dry_run(recipe))
    topics = Counter(s.topic for s in recipe.loaded_seeds)
    lines = [
        f"ok: {path}",
        f"  {len(recipe.loaded_seeds)} seeds over {len(topics)} topics, "
        f"{len(recipe.loaded_personas)} personas, language {recipe.language}, grounding {recipe.grounding}",
        "  models: " + ", ".join(f"{n}={p.model}" for n, p in recipe.models.items()),
    ]
    for step in recipe.steps:
        generator = recipe.generator(step)
        lines.append(
            f"  step {step.name}: {generator.name} v{generator.version} -> {generator.output}, "
            f"{planned[step.name]} items planned"
        )
    return "\n".join(lines)
