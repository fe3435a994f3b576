"""Rubric grading of one answer against the office's reference answer (the preference generator's judge).

Why a rubric with anchors and not one overall number: judges give steadier scores when each
criterion is defined and anchored. The per-criterion scores also say *why* a pair was chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from synthgen.llm.client import ChatClient
    from synthgen.llm.profile import ModelProfile
    from synthgen.prompts import PromptLibrary

__all__ = ["RUBRIC_ROLE", "WEIGHTS", "Grade", "RubricScores", "grade", "render_conversation"]


#: How each criterion counts in :attr:`Grade.score`. Faithfulness counts double because a
#: faculty assistant that invents a deadline or a regulation does more harm than a terse one.
WEIGHTS: Mapping[str, float] = {"faithfulness": 2.0, "helpfulness": 1.0, "completeness": 1.0, "tone": 1.0}


RUBRIC_ROLE = "judge_rubric"


def _score(description: str, alias: str) -> Any:
    # The wire name ends in ``_score``: it tells a real judge what the integer means, and the
    # offline provider fills score-named fields from the reference/answer overlap.
    return Field(ge=1, le=10, alias=alias, description=description)


class RubricScores(BaseModel):
    """A grade of one answer: the rationale first (reason before scoring), then integer scores 1-10."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    rationale: str = Field(description="2-4 sentences: what is claimed, what is supported, what is missing")
    faithfulness: int = _score(
        "every claim supported by the reference; invented facts score low", "faithfulness_score"
    )
    helpfulness: int = _score("solves the student's need or refers them to the office", "helpfulness_score")
    completeness: int = _score("covers the reference's facts relevant to the question", "completeness_score")
    tone: int = _score("expected language; clear, concise, courteous", "tone_score")

    def weighted(self) -> float:
        total = sum(WEIGHTS.values())
        return round(sum(getattr(self, name) * weight for name, weight in WEIGHTS.items()) / total, 4)


@dataclass(frozen=True)
class Grade:
    """One graded answer. ``score`` is the :data:`WEIGHTS`-weighted mean of ``scores`` (1 to 10)."""

    score: float
    scores: Mapping[str, int]
    rationale: str
    judge_model: str
    cached: bool


def render_conversation(conversation: Sequence[Mapping[str, str]]) -> str:
    """``role: content`` blocks, as the judge reads the context of the graded answer."""
    return "\n\n".join(f"[{m['role']}]\n{m['content'].strip()}" for m in conversation)


async def grade(
    client: ChatClient,
    profile: ModelProfile,
    *,
    conversation: Sequence[Mapping[str, str]],
    answer: str,
    reference: str,
    prompts: PromptLibrary,
    facts: str | None = None,
    language: str | None = None,
    version: str = "",
) -> Grade:
    """Grade ``answer`` to the last user turn of ``conversation`` against ``reference``.

    ``facts`` are further verified facts the answer may use without being penalised (a grounded
    candidate saw them); ``language`` is the expected answer language, a name or a code (default:
    the prompts').
    ``version`` goes into the cache key (the calling generator's version). Sampling, temperature
    included, comes from ``profile``: recipes give the judge temperature 0. A request that ends
    without a valid answer raises :class:`~synthgen.errors.CompletionFailed`.
    """
    if not conversation or conversation[-1]["role"] != "user":
        raise ValueError("the graded conversation must end with a user turn")
    content = prompts.render(
        RUBRIC_ROLE,
        conversation=render_conversation(conversation),
        reference=reference.strip(),
        facts=(facts or "").strip(),
        answer=answer.strip(),
        language=language or prompts.language,
    )
    completion = await client.complete(
        [{"role": "user", "content": content}],
        profile=profile,
        schema=RubricScores,
        version=version,
        call="judge",
    )
    parsed: RubricScores = completion.parsed
    return Grade(
        score=parsed.weighted(),
        scores={name: getattr(parsed, name) for name in WEIGHTS},
        rationale=parsed.rationale.strip(),
        judge_model=completion.model,
        cached=completion.cached,
    )
