"""Estimate calls, tokens and USD before spending.

Every work item of every step is first simulated on the embedded offline provider: the prompts are
the real ones and the conversation structure (turns, candidates, judge calls) is the recipe's, so
the number of calls and the prompt sizes are those of the run, with offline answers standing in
for the model's. ``pilot=N`` then sends N items per step to the real endpoints (through the cache,
so the run that follows pays nothing twice) and the same N items offline; the ratio of real to
simulated prompt and completion tokens per model (a ratio estimator: it cancels the item-to-item
variance that extrapolating N items directly would carry) scales the simulation of the whole recipe.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthgen.errors import CompletionFailed
from synthgen.generators.base import Generator, GeneratorContext, Rejected, WorkItem
from synthgen.llm.batch import batch_price_quote
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.limits import Limits
from synthgen.llm.usage import TOKEN_COUNTER, TokenUsage, UsageMeter, cost_usd, price_quote
from synthgen.paths import cache_path
from synthgen.pipeline.plan import StepPlan, assign_splits, walk
from synthgen.pipeline.waves import batch_waves
from synthgen.recipe import Recipe, load_recipe

__all__ = ["CostEstimate", "StepEstimate", "estimate", "item_cost"]


@dataclass
class StepEstimate:
    items: int
    calls: float
    prompt_tokens: float
    completion_tokens: float
    usd: float
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)
    waves: int = 0  # Batch API rounds the step takes (0: no batch profile), see pipeline.waves


@dataclass
class CostEstimate:
    method: str
    token_counter: str
    steps: dict[str, StepEstimate]

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.steps.values())

    @property
    def tokens(self) -> float:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps.values())

    @property
    def unpriced(self) -> list[str]:
        """Models with no known price: their calls are not in ``usd`` (shown as n/a, never as $0)."""
        return sorted(
            {m for s in self.steps.values() for m, v in s.by_model.items() if not v.get("priced", True)}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "token_counter": self.token_counter,
            "usd": self.usd,
            "unpriced": self.unpriced,
            "tokens": self.tokens,
            "steps": {k: asdict(v) for k, v in self.steps.items()},
        }


def _per_model(meter: UsageMeter) -> dict[str, TokenUsage]:
    """Paid and cache-served usage together, keyed by the requested model (offline suffix removed)."""
    out: dict[str, TokenUsage] = {}
    for source in (meter.by_model, meter.cached_by_model):
        for model, usage in source.items():
            out.setdefault(model.removesuffix("-offline"), TokenUsage()).add(usage)
    return out


async def _generate_all(
    generator: Generator, items: Iterable[WorkItem], ctx: GeneratorContext, workers: int = 32
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            try:
                rows.extend(await generator.generate(item, ctx))
            except (CompletionFailed, Rejected):
                continue

    await asyncio.gather(*(worker() for _ in range(workers)))
    return rows


async def _usage(
    plan: StepPlan, items: Sequence[WorkItem], *, offline: bool, cache: ResponseCache | None
) -> tuple[dict[str, TokenUsage], list[dict[str, Any]]]:
    meter = UsageMeter()
    recipe = plan.recipe
    async with ChatClient(cache=cache, meter=meter, limits=Limits(), offline=offline) as client:
        ctx = plan.context(client, recipe.models, recipe.prompt_library())
        rows = await _generate_all(plan.generator, items, ctx)
    return _per_model(meter), rows


async def _estimate(recipe: Recipe, pilot: int | None) -> CostEstimate:
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    steps: dict[str, StepEstimate] = {}
    cache = ResponseCache(cache_path()) if pilot else None

    async def simulate(plan: StepPlan) -> list[dict[str, Any]]:
        items = plan.items
        simulated, rows = await _usage(plan, items, offline=True, cache=None)
        ratios: dict[str, tuple[float, float]] = {}
        if pilot:
            sample = random.Random(recipe.seed).sample(items, min(pilot, len(items)))
            real, _ = await _usage(plan, sample, offline=False, cache=cache)
            offline_sample, _ = await _usage(plan, sample, offline=True, cache=None)
            for model, usage in offline_sample.items():
                measured = real.get(model, TokenUsage())
                ratios[model] = (
                    measured.prompt_tokens / max(1, usage.prompt_tokens),
                    measured.completion_tokens / max(1, usage.completion_tokens),
                )
        steps[plan.step.name] = _step_estimate(recipe, len(items), simulated, ratios)
        steps[plan.step.name].waves = await batch_waves(plan)
        return rows

    try:
        await walk(recipe, splits, simulate)
    finally:
        if cache is not None:
            cache.close()
    method = (
        f"offline simulation of every item, scaled by a pilot of {pilot} real items per step"
        if pilot
        else "offline simulation of every item (completion lengths are the offline provider's)"
    )
    return CostEstimate(method=method, token_counter=TOKEN_COUNTER, steps=steps)


async def item_cost(plan: StepPlan, sample: int = 5) -> float:
    """The dearest of the step's first ``sample`` items, simulated offline and priced with the
    profiles' prices: what the budget reserves before scheduling an item (the dearest, not the mean,
    so items in flight cannot together pass the cap by more than one item's cost)."""
    costs = []
    for item in plan.items[:sample]:
        simulated, _ = await _usage(plan, [item], offline=True, cache=None)
        costs.append(_step_estimate(plan.recipe, 1, simulated, {}).usd)
    return max(costs, default=0.0)


def _step_estimate(
    recipe: Recipe, items: int, simulated: Mapping[str, TokenUsage], ratios: Mapping[str, tuple[float, float]]
) -> StepEstimate:
    by_model: dict[str, dict[str, float]] = {}
    for model, usage in simulated.items():
        prompt_ratio, completion_ratio = ratios.get(model, (1.0, 1.0))
        scaled = TokenUsage(
            requests=usage.requests,
            prompt_tokens=round(usage.prompt_tokens * prompt_ratio),
            completion_tokens=round(usage.completion_tokens * completion_ratio),
        )
        profile = next((p for p in recipe.models.values() if p.model == model), None)
        batched = profile is not None and profile.batch
        prices = (batch_price_quote if batched else price_quote)(model, profile.prices if profile else None)[
            0
        ]
        by_model[model] = {
            "calls": scaled.requests,
            "prompt_tokens": scaled.prompt_tokens,
            "completion_tokens": scaled.completion_tokens,
            "usd": cost_usd(scaled, prices),
            "priced": prices is not None,
            "batch": batched,
        }
    return StepEstimate(
        items=items,
        calls=sum(m["calls"] for m in by_model.values()),
        prompt_tokens=sum(m["prompt_tokens"] for m in by_model.values()),
        completion_tokens=sum(m["completion_tokens"] for m in by_model.values()),
        usd=sum(m["usd"] for m in by_model.values()),
        by_model=by_model,
    )


def estimate(
    recipe: Recipe | str | Path,
    *,
    pilot: int | None = None,
    offline: bool = False,
    allow_outside_paths: bool = False,
) -> CostEstimate:
    """Planned calls, tokens and USD per step and model for ``recipe`` (``offline`` ignores ``pilot``)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, allow_outside_paths=allow_outside_paths)
    return asyncio.run(_estimate(recipe, None if offline else pilot))
