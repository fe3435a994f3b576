"""Batch prices: what a request sent through the Batch API costs.

genai-prices carries OpenAI's batch rates as a price variant (``processing: batch``); a model it does
not know, the snapshot's models and a profile's own ``prices`` get half the online price, OpenAI's
published batch discount on every chat model. The source string says which of the two was used.
"""

from __future__ import annotations

import functools

from synthgen.llm.profile import Prices
from synthgen.llm.usage import price_quote

__all__ = ["BATCH_DISCOUNT", "batch_price_quote"]

#: OpenAI's Batch API bills every chat model at 50% of its online price (input, cached input, output)
BATCH_DISCOUNT = 0.5


@functools.lru_cache(maxsize=256)
def _maintained(name: str) -> Prices | None:
    """genai-prices' batch variant for ``name`` (bundled data, no network), None if it has none."""
    try:
        import genai_prices
    except ImportError:
        return None

    def usd(**tokens: int) -> float:
        price = genai_prices.calc_price(
            genai_prices.Usage(**tokens),
            model_ref=name,
            provider_id="openai",
            price_context={"processing": "batch"},
        )
        return float(price.total_price)

    try:
        return Prices(
            input=usd(input_tokens=1_000_000),
            output=usd(output_tokens=1_000_000),
            cached_input=usd(input_tokens=1_000_000, cache_read_tokens=1_000_000),
        )
    except (LookupError, TypeError):  # unknown model, or a genai-prices without price contexts
        return None


def batch_price_quote(model: str, override: Prices | None = None) -> tuple[Prices | None, str]:
    """(batch prices, where they came from), e.g. ``genai-prices batch`` or ``snapshot x0.5 batch``."""
    online, source = price_quote(model, override)
    if online is None:
        return None, source
    if source == "genai-prices":
        maintained = _maintained(model.rsplit("/", 1)[-1].lower())
        if maintained is not None and maintained != online:
            return maintained, "genai-prices batch"
    halved = Prices(
        input=online.input * BATCH_DISCOUNT,
        output=online.output * BATCH_DISCOUNT,
        cached_input=None if online.cached_input is None else online.cached_input * BATCH_DISCOUNT,
    )
    return halved, f"{source} x{BATCH_DISCOUNT:g} batch"
