"""Waves without a provider: a collector whose batches the offline provider answers at once.

``synthgen estimate`` runs a few items of a batch step through it to count the waves a run will take
(a dialogue of T turns: about 2T, a student and an assistant wave per turn), with the real wave logic
rather than a formula that a generator's own call pattern could prove wrong.
"""

from __future__ import annotations

import json

from synthgen.llm.batch.collector import BatchCollector, _Group, _Request
from synthgen.llm.offline import offline_reply

__all__ = ["OfflineBatches"]


class OfflineBatches(BatchCollector):
    """Each wave is answered by the offline provider as it is submitted; ``stats.waves`` counts them."""

    def __init__(self, settle: float = 0.02) -> None:
        super().__init__(None, settle=settle)

    async def _submit(self, group: _Group, wave: list[_Request]) -> None:
        self.stats.waves += 1
        self.stats.requests += len(wave)
        for request in wave:
            if not request.future.done():
                request.future.set_result(offline_reply(json.loads(request.line)["body"]))
