"""Claim-level checks: an answer's claims against the reference (precision, contradictions) and the
reference's claims against the answer (recall). The quality filters and evaluation both use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.judge.ask import Judged, ask

if TYPE_CHECKING:
    from synthgen.llm.client import ChatClient
    from synthgen.llm.profile import ModelProfile
    from synthgen.prompts import PromptLibrary

__all__ = [
    "CLAIMS_ROLE",
    "RECALL_ROLE",
    "ClaimCheck",
    "ClaimVerdict",
    "check_claims",
    "verify_claims",
    "verify_reference_claims",
]


CLAIMS_ROLE = "judge_claims"


class ClaimVerdict(BaseModel):
    """One factual claim of an answer and whether the reference supports it."""

    model_config = ConfigDict(extra="forbid")

    claim: str = Field(description="one atomic factual statement of the answer, in its language")
    verdict: Literal["supported", "contradicted", "not_in_reference"]


class ClaimCheck(BaseModel):
    """Every factual claim of an answer; referrals and courtesy are not claims."""

    model_config = ConfigDict(extra="forbid")

    claims: list[ClaimVerdict]

    @property
    def unsupported(self) -> list[ClaimVerdict]:
        return [c for c in self.claims if c.verdict != "supported"]


async def verify_claims(
    client: ChatClient,
    profile: ModelProfile,
    *,
    answer: str,
    reference: str,
    prompts: PromptLibrary,
    language: str | None = None,
    version: str = "",
) -> ClaimCheck:
    """Split ``answer`` into atomic claims and check each against ``reference``.

    Used by the quality filters (an assistant turn must not state what its facts do not say); evaluation
    calls :func:`check_claims`, the same request, for the judge model and cache flag too.
    """
    judged = await check_claims(
        client,
        profile,
        answer=answer,
        reference=reference,
        prompts=prompts,
        language=language,
        version=version,
    )
    return judged.verdict


async def check_claims(
    client: ChatClient,
    profile: ModelProfile,
    *,
    answer: str,
    reference: str,
    prompts: PromptLibrary,
    language: str | None = None,
    version: str = "",
) -> Judged[ClaimCheck]:
    """:func:`verify_claims` with the call's metadata: claim precision and contradiction rate."""
    return await ask(
        client, profile, prompts, CLAIMS_ROLE, ClaimCheck, version, language,
        reference=reference, answer=answer,
    )  # fmt: skip


RECALL_ROLE = "judge_recall"


async def verify_reference_claims(
    client: ChatClient,
    profile: ModelProfile,
    *,
    answer: str,
    reference: str,
    prompts: PromptLibrary,
    language: str | None = None,
    version: str = "",
) -> Judged[ClaimCheck]:
    """Split the gold ``reference`` into claims and check each against ``answer`` (recall).

    ``supported``: the answer states it; ``contradicted``: it says otherwise; ``not_in_reference``: the
    answer does not mention it (the schema is :func:`verify_claims`', with the roles swapped).
    """
    return await ask(
        client, profile, prompts, RECALL_ROLE, ClaimCheck, version, language,
        reference=reference, answer=answer,
    )  # fmt: skip
