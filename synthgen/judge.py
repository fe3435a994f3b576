"""LLM-as-judge. Rubric grading of one answer against the office's reference answer.

The preference generator grades each candidate with it; the quality filters verify claims with
:func:`verify_claims`. Evaluation (:mod:`synthgen.evaluator`) adds the MT-Bench-style modes below the
rubric, each one structured-output call with its own schema and template, taking a plain
:class:`ChatClient` and :class:`ModelProfile` rather than a generator context:

* :func:`grade_single`: one 1-10 score with a rationale; on a longer conversation it grades the last
  answer in context (multi-turn, with scripted follow-up questions);
* :func:`compare`: which of two answers is better, in one order; :func:`combine_orders` merges the two
  orders (a disagreement is a tie, as in MT-Bench) and says whether the judge was order-consistent;
* :func:`check_claims` (precision, contradictions; :func:`verify_claims` without the call's metadata)
  and :func:`verify_reference_claims` (recall: the gold answer's claims checked against the answer);
* :func:`judge_abstention`: was an out-of-scope question declined and referred to the office;
* :func:`judge_coverage`: a real student query answered correctly, wrongly, or declined.

A call that ends without a valid answer raises :class:`~synthgen.errors.CompletionFailed`: the caller
records it (evaluation counts parse failures, it never drops them). Calls are cached by the client.

Why a rubric with anchors and not one overall number: judges give steadier scores when each
criterion is defined and anchored. The per-criterion scores also say *why* a pair was chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .client import ChatClient
    from .profile import ModelProfile
    from .prompts import PromptLibrary

__all__ = [
    "WEIGHTS",
    "AbstentionVerdict",
    "ClaimCheck",
    "ClaimVerdict",
    "CoverageVerdict",
    "Grade",
    "Judged",
    "PairwiseVerdict",
    "RubricScores",
    "SingleGrade",
    "check_claims",
    "combine_orders",
    "compare",
    "grade",
    "grade_single",
    "judge_abstention",
    "judge_coverage",
    "render_conversation",
    "verify_claims",
    "verify_reference_claims",
]

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
        [{"role": "user", "content": content}], profile=profile, schema=RubricScores, version=version
    )
    parsed: RubricScores = completion.parsed
    return Grade(
        score=parsed.weighted(),
        scores={name: getattr(parsed, name) for name in WEIGHTS},
        rationale=parsed.rationale.strip(),
        judge_model=completion.model,
        cached=completion.cached,
    )


# --- claim-level verification ----------------------------------------------------------------

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
    return await _ask(
        client, profile, prompts, CLAIMS_ROLE, ClaimCheck, version, language,
        reference=reference, answer=answer,
    )  # fmt: skip


# --- evaluation modes ------------------------------------------------------------------------

SINGLE_ROLE = "judge_single"
PAIRWISE_ROLE = "judge_pairwise"
RECALL_ROLE = "judge_recall"
ABSTENTION_ROLE = "judge_abstention"
COVERAGE_ROLE = "judge_coverage"
VerdictT = TypeVar("VerdictT", bound=BaseModel)


@dataclass(frozen=True)
class Judged(Generic[VerdictT]):
    """One judge call's parsed verdict, with the model that answered and whether it came from cache."""

    verdict: VerdictT
    judge_model: str
    cached: bool


async def _ask(
    client: ChatClient,
    profile: ModelProfile,
    prompts: PromptLibrary,
    role: str,
    schema: type[VerdictT],
    version: str,
    language: str | None,
    **values: str,
) -> Judged[VerdictT]:
    """Render ``role`` with the stripped ``values``, ask for ``schema``; the one request of every mode."""
    texts = {k: v.strip() for k, v in values.items()}
    content = prompts.render(role, **texts, language=language or prompts.language)
    completion = await client.complete(
        [{"role": "user", "content": content}], profile=profile, schema=schema, version=version
    )
    return Judged(completion.parsed, completion.model, completion.cached)


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
    return await _ask(
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
    return await _ask(
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
    return await _ask(
        client, profile, prompts, RECALL_ROLE, ClaimCheck, version, language,
        reference=reference, answer=answer,
    )  # fmt: skip


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
    return await _ask(
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
    return await _ask(
        client, profile, prompts, COVERAGE_ROLE, CoverageVerdict, version, language,
        question=question, reference=facts, answer=answer,
    )  # fmt: skip
