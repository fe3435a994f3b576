"""OpenAI's Batch API for every step: a collector that turns the requests of all live work items into
waves of batches, a journal that makes them resumable, and the batch price (docs/batch.md)."""

from synthgen.llm.batch.collector import BatchCollector, BatchStats, batch_line
from synthgen.llm.batch.journal import BatchJournal, BatchRecord, read_batches, summarize
from synthgen.llm.batch.prices import BATCH_DISCOUNT, batch_price_quote

__all__ = [
    "BATCH_DISCOUNT",
    "BatchCollector",
    "BatchJournal",
    "BatchRecord",
    "BatchStats",
    "batch_line",
    "batch_price_quote",
    "read_batches",
    "summarize",
]
