"""How many waves a batch step takes: a few of its items simulated offline through the real wave logic.

In a batch run every item of a step is live at once, so the step takes as many waves as its longest
item has rounds of calls (calls an item makes together, e.g. K candidates, share a wave; each turn
of a dialogue is a student wave then an assistant wave), plus a wave per re-ask. Each sampled item
runs alone through :class:`~synthgen.llm.batch.offline.OfflineBatches`; the step's figure is the most
any of them took.
"""

from __future__ import annotations

import contextlib

from synthgen.errors import CompletionFailed
from synthgen.generators.base import Rejected
from synthgen.llm.batch.offline import OfflineBatches
from synthgen.llm.client import ChatClient
from synthgen.pipeline.plan import StepPlan

__all__ = ["batch_waves"]


async def batch_waves(plan: StepPlan, sample: int = 5) -> int:
    """The most waves any of the step's first ``sample`` items takes (0 when no profile is batched)."""
    recipe = plan.recipe
    if not any(p.batch for p in recipe.models.values()):
        return 0
    most = 0
    prompts = recipe.prompt_library()
    for item in plan.items[:sample]:
        batches = OfflineBatches()
        async with ChatClient(offline=True, batches=batches) as client:
            with contextlib.suppress(CompletionFailed, Rejected):
                await plan.generator.generate(item, plan.context(client, recipe.models, prompts))
            most = max(most, batches.stats.waves)
    return most
