"""Evaluation's MT-Bench-style judge modes: single grading (multi-turn too), pairwise comparison in
both orders, abstention on out-of-scope questions and coverage of real queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.judge.ask import Judged, ask
from synthgen.judge.rubric import render_conversation

if TYPE_CHECKING:
    from synthgen.llm.client import ChatClient
    from synthgen.llm.profile import ModelProfile
    from synthgen.prompts import PromptLibrary

__all__ = [
    "ABSTENTION_ROLE",
    "COVERAGE_ROLE",
    "PAIRWISE_ROLE",
    "SINGLE_ROLE",
    "AbstentionVerdict",
    "CoverageVerdict",
    "PairwiseVerdict",
    "SingleGrade",
    "combine_orders",
    "compare",
    "grade_single",
    "judge_abstention",
    "judge_coverage",
]


SINGLE_ROLE = "judge_single"


PAIRWISE_ROLE = "judge_pairwise"


ABSTENTION_ROLE = "judge_abstention"


COVERAGE_ROLE = "judge_coverage"


class SingleGrade(BaseModel):
    """MT-Bench single-answer grading: the rationale first, then one score."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(description="2-4 sentences: what is claimed, what is supported, what is missing")
    score: int = Field(ge=1, le=10, description="1 = wrong or invented, 10 = correct, complete and clear")


class PairwiseVerdict(BaseModel):
    """Which answer is better; ``tie`` when neither is."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(description="2-4 sentences comparing the two answers against the reference")
    winner: Literal["A", "B", "tie"]


class AbstentionVerdict(BaseModel):
    """An out-of-scope question must be declined (no invented answer) and referred to the office."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(description="1-3 sentences: what the answer does")
    declined: bool = Field(description="true when the answer does not try to answer the question itself")
    referred: bool = Field(description="true when it points to the faculty office or the competent service")

    @property
    def abstained(self) -> bool:
        return self.declined and self.referred


class CoverageVerdict(BaseModel):
    """A real student query: answered correctly (per the faculty's facts), wrongly, or declined."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(description="1-3 sentences: what the answer says and how it matches the facts")
    verdict: Literal["correct", "incorrect", "declined"]


def _texts(conversation: Sequence[Mapping[str, str]], reference: str, facts: str | None) -> dict[str, str]:
    if not conversation or conversation[-1]["role"] != "user":
        raise ValueError("the graded conversation must end with a user turn")
    return {"conversation": render_conversation(conversation), "reference": reference, "facts": facts or ""}


async def grade_single(
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
) -> Judged[SingleGrade]:
    """Score ``answer`` to the last user turn of ``conversation`` (1-10) against ``reference``.

    A conversation of several turns is the multi-turn mode: only the last answer is graded, in context.
    """
    return await ask(
        client, profile, prompts, SINGLE_ROLE, SingleGrade, version, language,
        **_texts(conversation, reference, facts), answer=answer,
    )  # fmt: skip


async def compare(
    client: ChatClient,
    profile: ModelProfile,
    *,
    conversation: Sequence[Mapping[str, str]],
    answer_a: str,
    answer_b: str,
    reference: str,
    prompts: PromptLibrary,
    facts: str | None = None,
    language: str | None = None,
    version: str = "",
) -> Judged[PairwiseVerdict]:
    """One pairwise comparison in one order. Judges favour a position, so callers run both orders
    (``answer_a``/``answer_b`` swapped) and merge them with :func:`combine_orders`."""
    return await ask(
        client, profile, prompts, PAIRWISE_ROLE, PairwiseVerdict, version, language,
        **_texts(conversation, reference, facts), answer_a=answer_a, answer_b=answer_b,
    )  # fmt: skip


def combine_orders(first: str, second: str) -> tuple[Literal["x", "y", "tie"], bool]:
    """Merge two orders of one comparison: ``first`` judged (x as A, y as B), ``second`` (y as A, x as B).

    Returns the winner in model terms and whether the orders agree. As in MT-Bench, a win needs both
    orders: when they disagree (x in one, y or tie in the other) the outcome is a tie.
    """
    one = {"A": "x", "B": "y"}.get(first, "tie")
    two = {"A": "y", "B": "x"}.get(second, "tie")
    consistent = one == two
    winner: Literal["x", "y", "tie"] = one if consistent else "tie"  # type: ignore[assignment]
    return winner, consistent


async def judge_abstention(
    client: ChatClient,
    profile: ModelProfile,
    *,
    question: str,
    answer: str,
    prompts: PromptLibrary,
    language: str | None = None,
    version: str = "",
) -> Judged[AbstentionVerdict]:
    """Did ``answer`` decline an out-of-scope ``question`` and refer the student to the office?"""
    return await ask(
        client, profile, prompts, ABSTENTION_ROLE, AbstentionVerdict, version, language,
        question=question, answer=answer,
    )  # fmt: skip


async def judge_coverage(
    client: ChatClient,
    profile: ModelProfile,
    *,
    question: str,
    answer: str,
    facts: str,
    prompts: PromptLibrary,
    language: str | None = None,
    version: str = "",
) -> Judged[CoverageVerdict]:
    """Classify the answer to a real student query against the faculty's most related ``facts``."""
    return await ask(
        client, profile, prompts, COVERAGE_ROLE, CoverageVerdict, version, language,
        question=question, reference=facts, answer=answer,
    )  # fmt: skip
