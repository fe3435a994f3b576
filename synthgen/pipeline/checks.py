"""The checks every generated row passes before it is journaled.

In order: the row model of its output kind (a malformed row is a failure of the item, not a
rejection), the local quality filters of that kind, and, when the recipe sets
``quality.verify_claims``, claim-level verification of its assistant text against its seeds' answers
by an LLM judge. The step is handed one :class:`RowChecks`; it reaches for nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthgen.generators.base import GeneratorContext
from synthgen.generators.fanout import gather
from synthgen.judge.claims import verify_claims
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.quality.filters import QualityConfig, Rejection, check_row
from synthgen.records import output_kind
from synthgen.seeds import Seed

__all__ = ["RowChecks"]


class RowChecks:
    """``await checks(kind, row, ctx)``: None to keep the row, or the :class:`Rejection` that drops it.

    Raises pydantic's ``ValidationError`` for a row that is not of its kind, and
    :class:`~synthgen.errors.CompletionFailed` when claim verification could not get a verdict.
    """

    def __init__(
        self,
        *,
        seeds: Mapping[str, Seed],
        language: str,
        quality: QualityConfig,
        client: ChatClient,
        profiles: Mapping[str, ModelProfile],
    ) -> None:
        self.seeds, self.language, self.quality = seeds, language, quality
        self.client, self.profiles = client, profiles

    async def __call__(self, kind: str, row: dict[str, Any], ctx: GeneratorContext) -> Rejection | None:
        output_kind(kind).validate(row)
        verdict = check_row(kind, row, seeds=self.seeds, language=self.language, config=self.quality)
        if verdict is None and self.quality.verify_claims:
            verdict = await self._verify_claims(kind, row, ctx)
        return verdict

    async def _verify_claims(self, kind: str, row: dict[str, Any], ctx: GeneratorContext) -> Rejection | None:
        """Claim-level check of every assistant turn (sft) or the chosen answer (prefs) against its facts."""
        answers = output_kind(kind).answers(row)
        if not answers:
            return None
        quality = self.quality
        assert quality.verify_claims is not None
        reference = "\n\n".join(self.seeds[s].answer for s in row["seed_ids"] if s in self.seeds)
        checks = await gather(
            verify_claims(
                self.client,
                self.profiles[quality.verify_claims],
                answer=answer,
                reference=reference,
                prompts=ctx.prompts,
                language=self.language,
                version=ctx.version,
            )
            for answer in answers
        )
        unsupported = [c for check in checks for c in check.unsupported]
        if len(unsupported) > quality.max_unsupported_claims:
            detail = "; ".join(f"{c.verdict}: {c.claim}" for c in unsupported[:3])
            return Rejection("unsupported_claim", detail[:500])
        return None
