"""Estimate calls, tokens and USD before spending, in about a second.

A sample of each step's items (``sample``, 32 by default, drawn from the recipe seed) is simulated
on the embedded offline provider (:mod:`synthgen.pipeline.simulate`): the prompts are the real ones
and the conversation structure (turns, candidates, judge calls) is the recipe's, so the calls and
prompt sizes per item are those of the run, with offline answers standing in for the model's. Each
step's totals are the sample's mean per item times its item count; a step fed by another plans from
the sampled rows of its input and counts its items at the input's scale. The stated ``error`` is
the 95% sampling error of that mean (finite-population corrected; a fed step adds its input's, in
quadrature, as do the steps for the total): it measures how far the sample's
mean per item may be from every item's, not how far offline answers are from a model's (``pilot``
measures that). ``sample=None`` simulates every item (the first release's method: 27 s for the
faculty recipe, the whole of it before a run's first request).

Requests an earlier step already sent (the preference step's grounded first candidate is the
dialogue's assistant turn) are counted as the run will see them: cache hits, in ``cached_calls``,
not in the bill. ``pilot=N`` then sends N items per step to the real endpoints (through the cache,
so the run that follows pays nothing twice) and the same N items to the simulation; the ratio of
real to simulated prompt and completion tokens per model (a ratio estimator: it cancels the
item-to-item variance that extrapolating N items directly would carry) scales the estimate.

An estimate without a pilot depends only on the recipe's fingerprint, the sample and the prices:
it is kept in ``$SYNTHGEN_HOME/estimates/`` and reused until one of them changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthgen._version import __version__
from synthgen.errors import CompletionFailed
from synthgen.generators.base import Rejected
from synthgen.llm.batch import batch_price_quote
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.limits import Limits
from synthgen.llm.offline import OFFLINE_VERSION
from synthgen.llm.usage import TOKEN_COUNTER, TokenUsage, UsageMeter, cost_usd, price_for, price_quote
from synthgen.paths import cache_path, home
from synthgen.pipeline.plan import StepPlan, assign_splits, walk
from synthgen.pipeline.simulate import ItemUsage, Simulator, simulate
from synthgen.pipeline.waves import batch_waves
from synthgen.recipe import Recipe, load_recipe

__all__ = [
    "DEFAULT_SAMPLE",
    "GATE_SAMPLE",
    "CostEstimate",
    "StepEstimate",
    "estimate",
    "gate_estimate",
    "item_cost",
]

log = logging.getLogger("synthgen.pipeline.estimate")

#: items simulated per step: about a second for the faculty recipe, within a few percent (its error)
DEFAULT_SAMPLE = 32
#: items per step the budget gate simulates when no estimate is kept: well under a second for the
#: faculty recipe, its error stated (about ±25% there): the gate asks, reservations enforce the budget
GATE_SAMPLE = 8
_Z95 = 1.96


@dataclass
class StepEstimate:
    items: int
    calls: float
    prompt_tokens: float
    completion_tokens: float
    usd: float
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)
    sampled: int = 0  # items simulated (all of them: ``items``)
    error: float = 0.0  # relative 95% sampling error of ``usd`` (of the tokens where nothing is priced)
    cached_calls: float = 0.0  # requests another step or call already sent: cache hits, free
    item_usd_max: float = 0.0  # the dearest simulated item
    waves: int = 0  # Batch API rounds the step takes (0: no batch profile), see pipeline.waves


@dataclass
class CostEstimate:
    method: str
    token_counter: str
    steps: dict[str, StepEstimate]
    cached: bool = False  # read from $SYNTHGEN_HOME/estimates (same fingerprint, sample and prices)

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.steps.values())

    @property
    def tokens(self) -> float:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps.values())

    @property
    def error(self) -> float:
        """Relative 95% sampling error of ``usd`` (steps' errors are independent: added in quadrature)."""
        total = self.usd or self.tokens
        if not total:
            return 0.0
        weight = (lambda s: s.usd) if self.usd else (lambda s: s.prompt_tokens + s.completion_tokens)
        return math.sqrt(sum((s.error * weight(s)) ** 2 for s in self.steps.values())) / total

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
            "error": self.error,
            "unpriced": self.unpriced,
            "tokens": self.tokens,
            "cached": self.cached,
            "steps": {k: asdict(v) for k, v in self.steps.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostEstimate:
        steps = {k: StepEstimate(**v) for k, v in data["steps"].items()}
        return cls(method=data["method"], token_counter=data["token_counter"], steps=steps)


def _per_model(meter: UsageMeter) -> dict[str, TokenUsage]:
    """Paid and cache-served usage together, keyed by the requested model (offline suffix removed)."""
    out: dict[str, TokenUsage] = {}
    for source in (meter.by_model, meter.cached_by_model):
        for model, usage in source.items():
            out.setdefault(model.removesuffix("-offline"), TokenUsage()).add(usage)
    return out


def _summed(usages: Sequence[ItemUsage], *, cached: bool = True) -> dict[str, TokenUsage]:
    out: dict[str, TokenUsage] = {}
    for item in usages:
        for source in (item.paid, item.cached) if cached else (item.paid,):
            for model, usage in source.items():
                out.setdefault(model, TokenUsage()).add(usage)
    return out


async def _real_usage(plan: StepPlan, items: Sequence[Any], cache: ResponseCache) -> dict[str, TokenUsage]:
    """What the real endpoints answer for ``items`` (the pilot), paid and cache-served alike."""
    meter = UsageMeter()
    async with ChatClient(cache=cache, meter=meter, limits=Limits()) as client:
        ctx = plan.context(client, plan.recipe.models, plan.recipe.prompt_library())

        async def one(item: Any) -> None:
            with contextlib.suppress(CompletionFailed, Rejected):
                await plan.generator.generate(item, ctx)

        await asyncio.gather(*(one(item) for item in items))
    return _per_model(meter)


def _sample(plan: StepPlan, size: int | None) -> list[Any]:
    """``size`` of the step's items drawn from the recipe seed, in plan order (all: ``None``)."""
    items = plan.items
    if size is None or size >= len(items):
        return list(items)
    rng = random.Random(f"{plan.recipe.seed}/estimate/{plan.step.name}")
    return [items[i] for i in sorted(rng.sample(range(len(items)), size))]


def _relative_error(costs: Sequence[float], population: int) -> float:
    """95% half-width of the mean of ``costs`` relative to it, finite-population corrected."""
    n = len(costs)
    mean = sum(costs) / n if n else 0.0
    if n < 2 or population <= n or mean <= 0:
        return 0.0
    variance = sum((c - mean) ** 2 for c in costs) / (n - 1)
    return _Z95 * math.sqrt(variance / n * (1 - n / population)) / mean


def _item_cost(recipe: Recipe, item: ItemUsage) -> float:
    """One item's paid requests at the profiles' prices (its tokens when no model is priced)."""
    total = 0.0
    for model, usage in item.paid.items():
        profile = next((p for p in recipe.models.values() if p.model == model), None)
        prices = price_for(model, profile.prices if profile else None)
        total += cost_usd(usage, prices) if prices is not None else 0.0
    return total


async def _estimate(recipe: Recipe, pilot: int | None, sample: int | None) -> CostEstimate:
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    steps: dict[str, StepEstimate] = {}
    scale: dict[str, float] = {}  # step -> items it stands for per item simulated
    cache = ResponseCache(cache_path()) if pilot else None
    simulator = Simulator()

    async def produce(plan: StepPlan) -> list[dict[str, Any]]:
        upstream = scale.get(plan.step.from_ or "", 1.0)
        population = round(len(plan.items) * upstream)
        chosen = _sample(plan, sample)
        usages = await simulate(plan, chosen, simulator)
        factor = population / len(chosen) if chosen else 0.0
        scale[plan.step.name] = upstream * len(plan.items) / len(chosen) if chosen else 0.0
        ratios: dict[str, tuple[float, float]] = {}
        if pilot and plan.items:
            assert cache is not None
            pilot_items = random.Random(recipe.seed).sample(plan.items, min(pilot, len(plan.items)))
            real = await _real_usage(plan, pilot_items, cache)
            offline = _summed(await simulate(plan, pilot_items, Simulator()))
            for model, usage in offline.items():
                measured = real.get(model, TokenUsage())
                ratios[model] = (
                    measured.prompt_tokens / max(1, usage.prompt_tokens),
                    measured.completion_tokens / max(1, usage.completion_tokens),
                )
        paid = _summed(usages, cached=False)
        scaled = {
            model: TokenUsage(
                requests=round(u.requests * factor),
                prompt_tokens=round(u.prompt_tokens * factor),
                completion_tokens=round(u.completion_tokens * factor),
            )
            for model, u in paid.items()
        }
        costs = [_item_cost(recipe, u) for u in usages]
        if not any(costs):  # nothing priced: state the error of the tokens instead
            costs = [
                float(sum(t.prompt_tokens + t.completion_tokens for t in u.paid.values())) for u in usages
            ]
        step = _step_estimate(recipe, population, scaled, ratios)
        step.sampled = len(chosen)
        # a step fed by another plans from its input's sampled rows: its input's error is its own too
        inherited = steps[plan.step.from_].error if plan.step.from_ in steps else 0.0
        step.error = math.hypot(_relative_error(costs, population), inherited)
        step.cached_calls = round(sum(t.requests for u in usages for t in u.cached.values()) * factor)
        step.item_usd_max = max((_item_cost(recipe, u) for u in usages), default=0.0)
        step.waves = await batch_waves(plan)
        steps[plan.step.name] = step
        return [row for u in usages for row in u.rows]

    try:
        await walk(recipe, splits, produce)
    finally:
        if cache is not None:
            cache.close()
    how = (
        "offline simulation of every item"
        if sample is None
        else f"offline simulation of up to {sample} items per step, scaled to the step's items"
    )
    method = (
        f"{how}, scaled by a pilot of {pilot} real items per step"
        if pilot
        else f"{how} (completion lengths are the offline provider's)"
    )
    return CostEstimate(method=method, token_counter=TOKEN_COUNTER, steps=steps)


async def item_cost(plan: StepPlan, sample: int = 5) -> float:
    """The dearest of the step's first ``sample`` items, simulated offline and priced with the
    profiles' prices: what the budget reserves before scheduling an item (the dearest, not the mean,
    so items in flight cannot together pass the cap by more than one item's cost)."""
    usages = await simulate(plan, plan.items[:sample], Simulator())
    return max((_item_cost(plan.recipe, u) for u in usages), default=0.0)


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


def _cache_file(recipe: Recipe, sample: int | None) -> Path:
    """Where an estimate without a pilot is kept: named by what decides it (the recipe fingerprint,
    the sample, every profile's prices and batch mode, the offline provider's and synthgen's versions)."""
    prices = {}
    for name, profile in sorted(recipe.models.items()):
        price = price_for(profile.model, profile.prices)
        dumped = price.model_dump(mode="json") if price is not None else None
        prices[name] = [profile.model, dumped, profile.batch]  # batch: another price, and waves
    blob = json.dumps(
        [recipe.fingerprint(), sample, prices, OFFLINE_VERSION, __version__], sort_keys=True, default=str
    )
    return home() / "estimates" / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.json"


def _read(path: Path) -> CostEstimate | None:
    try:
        found = CostEstimate.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or not one of ours: estimated again and rewritten
    found.cached = True
    return found


def _write(path: Path, result: CostEstimate) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_json()), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a convenience, never a reason to fail
        log.warning("could not keep the estimate in %s: %s", path.parent, exc)


def estimate(
    recipe: Recipe | str | Path,
    *,
    pilot: int | None = None,
    offline: bool = False,
    sample: int | None = DEFAULT_SAMPLE,
    use_cache: bool = True,
    allow_outside_paths: bool = False,
) -> CostEstimate:
    """Planned calls, tokens and USD per step and model for ``recipe`` (``offline`` ignores ``pilot``).

    ``sample``: items simulated per step (``None``: every item). Without a pilot the estimate is
    kept by recipe fingerprint and reused (``use_cache=False`` estimates afresh).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, allow_outside_paths=allow_outside_paths)
    pilot = None if offline else pilot
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1 item per step, or None for every item; got {sample}")
    path = _cache_file(recipe, sample) if pilot is None else None
    if path is not None and use_cache and (found := _read(path)) is not None:
        return found
    result = asyncio.run(_estimate(recipe, pilot, sample))
    if path is not None:
        _write(path, result)
    return result


def gate_estimate(recipe: Recipe) -> CostEstimate:
    """What the budget gate holds against ``budget.max_usd`` before a run: the kept estimate of
    ``synthgen estimate`` when there is one, else a quick one of ``GATE_SAMPLE`` items per step (its
    error is stated; the budget itself is enforced by reservations while the run goes, not by this)."""
    if (kept := _read(_cache_file(recipe, DEFAULT_SAMPLE))) is not None:
        return kept
    return estimate(recipe, sample=GATE_SAMPLE)
