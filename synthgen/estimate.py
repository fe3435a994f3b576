"""Estimate calls, tokens and USD before spending: a simulation or a pilot, extrapolated.

Without a pilot, a few items of every step run through the embedded offline provider: the prompts
are the real ones, so prompt tokens and the number of calls are exact for those items, while
completion lengths are those of the offline answers (extractive, close to a seed answer's length).
``pilot=N`` runs N items of each step against the real endpoints instead (through the cache, so the
run that follows pays nothing twice) and extrapolates measured tokens to the recipe's item count.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .cache import ResponseCache
from .client import ChatClient
from .errors import CompletionFailed
from .generator import Rejected
from .limits import Limits
from .recipe import Recipe
from .runner import assign_splits, context_for
from .settings import cache_path
from .usage import TOKEN_COUNTER, TokenUsage, UsageMeter, cost_usd, price_for

__all__ = ["Estimate", "StepEstimate", "estimate"]

DEFAULT_SAMPLE = 8


@dataclass
class StepEstimate:
    items: int
    sampled: int
    calls: float
    prompt_tokens: float
    completion_tokens: float
    usd: float
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Estimate:
    method: str
    token_counter: str
    steps: dict[str, StepEstimate]

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.steps.values())

    @property
    def tokens(self) -> float:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps.values())

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "token_counter": self.token_counter, "usd": self.usd,
                "tokens": self.tokens, "steps": {k: asdict(v) for k, v in self.steps.items()}}


def _combined(meter: UsageMeter) -> dict[str, TokenUsage]:
    out: dict[str, TokenUsage] = {}
    for source in (meter.by_model, meter.cached_by_model):
        for model, usage in source.items():
            out.setdefault(model, TokenUsage()).add(usage)
    return out


async def _estimate(recipe: Recipe, pilot: int | None, offline: bool) -> Estimate:
    simulate = pilot is None or offline
    sample_size = pilot or DEFAULT_SAMPLE
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    prompts = recipe.prompt_library()
    steps: dict[str, StepEstimate] = {}
    pilot_rows: dict[str, list[Mapping[str, Any]]] = {}
    planned: dict[str, int] = {}
    cache = ResponseCache(cache_path(), enabled=not simulate)
    try:
        for step in recipe.steps:
            generator = recipe.generator(step)
            upstream = pilot_rows.get(step.from_, []) if step.from_ else []
            items = generator.plan(recipe.loaded_seeds, splits, recipe.seed, step.name, upstream)
            # a downstream step plans one item per upstream row: extrapolate from the upstream count
            total = planned[step.from_] if step.from_ else len(items)
            planned[step.name] = total
            sample = random.Random(recipe.seed).sample(items, min(sample_size, len(items)))
            meter = UsageMeter()
            client = ChatClient(cache=cache, meter=meter, limits=Limits(), offline=simulate)
            async with client:
                ctx = context_for(recipe, client, step, generator, upstream, recipe.models, prompts)
                results = await asyncio.gather(*(generator.generate(i, ctx) for i in sample), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, CompletionFailed | Rejected):
                    raise result
            pilot_rows[step.name] = [row for r in results if isinstance(r, list) for row in r]
            scale = total / max(1, len(sample))
            by_model: dict[str, dict[str, float]] = {}
            usd = 0.0
            for model, usage in _combined(meter).items():
                profile = next((p for p in recipe.models.values() if model.startswith(p.model)), None)
                prices = price_for(profile.model if profile else model, profile.prices if profile else None)
                cost = cost_usd(usage, prices) * scale
                usd += cost
                by_model[model.removesuffix("-offline")] = {
                    "calls": usage.requests * scale, "prompt_tokens": usage.prompt_tokens * scale,
                    "completion_tokens": usage.completion_tokens * scale, "usd": cost,
                }
            steps[step.name] = StepEstimate(
                items=total, sampled=len(sample),
                calls=sum(m["calls"] for m in by_model.values()),
                prompt_tokens=sum(m["prompt_tokens"] for m in by_model.values()),
                completion_tokens=sum(m["completion_tokens"] for m in by_model.values()),
                usd=usd, by_model=by_model,
            )
    finally:
        cache.close()
    method = (f"offline simulation of {sample_size} items per step" if simulate
              else f"pilot on {sample_size} items per step against the real endpoints")
    return Estimate(method=method, token_counter=TOKEN_COUNTER, steps=steps)


def estimate(recipe: Recipe, *, pilot: int | None = None, offline: bool = False) -> Estimate:
    """Planned calls, tokens and USD per step and model for ``recipe``."""
    return asyncio.run(_estimate(recipe, pilot, offline))
