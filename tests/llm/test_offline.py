"""The embedded offline provider: deterministic, extractive, and judged the way the rubric reads.

Offline data is for pipeline checks, but it should read plausibly and separate grounded from
ungrounded answers, or the demo's preference pairs and evaluation say nothing.
"""

from __future__ import annotations

from typing import Any

from synthgen.judge.rubric import grade
from synthgen.llm.client import ChatClient
from synthgen.llm.offline import offline_reply
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary

FACTS = """<facts>
<fact question="¿Cuándo es la matrícula de continuación?">
Los estudiantes de continuación se matriculan en la sede electrónica del 28 de julio al 12 de septiembre.
</fact>
<fact question="¿Dónde se entrega la solicitud de matrícula fuera de plazo?">
La solicitud de matrícula fuera de plazo se presenta en el registro electrónico dirigida al Decanato.
</fact>
</facts>"""
CONTINUING = "Los estudiantes de continuación se matriculan en la sede electrónica del 28 de julio al 12 de septiembre."
REFERRAL = "No dispongo de esa información; te recomiendo consultarlo con la Secretaría de la Facultad."
JUDGE = ModelProfile(name="judge", model="gpt-4o-2024-08-06", temperature=0.0)


def reply(messages: list[dict[str, str]], sample: str = "0") -> str:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    return str(offline_reply(body, sample)["choices"][0]["message"]["content"])


def test_an_answer_quotes_the_facts_that_match_the_question() -> None:
    answer = reply(
        [
            {"role": "system", "content": FACTS},
            {"role": "user", "content": "¿Qué fechas tienen los estudiantes de continuación?"},
        ]
    )
    assert "28 de julio al 12 de septiembre" in answer


def test_a_question_the_facts_do_not_touch_is_referred_to_the_office() -> None:
    answer = reply([{"role": "system", "content": FACTS}, {"role": "user", "content": "¿Hay aparcamiento?"}])
    assert answer == REFERRAL
    english = reply(
        [{"role": "system", "content": "<facts>\n</facts>"}, {"role": "user", "content": "Is there parking?"}]
    )
    assert english == "I do not have that information; please ask the Faculty office."


def test_a_follow_up_is_answered_in_context_without_repeating_the_last_answer() -> None:
    first = CONTINUING
    conversation = [
        {"role": "system", "content": FACTS},
        {"role": "user", "content": "Tengo que hacer la matrícula fuera de plazo, ¿cuándo es?"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "¿Y cómo lo hago?"},  # no content word of the facts
    ]
    answers = {reply(conversation, sample=str(k)) for k in range(5)}
    for answer in answers:
        assert answer != REFERRAL
        assert first not in answer  # what the assistant already said is not said again
        assert "registro electrónico" in answer


def test_answers_are_deterministic_per_sample_and_vary_across_samples() -> None:
    messages = [
        {"role": "system", "content": FACTS},
        {"role": "user", "content": "¿Matrícula de continuación y fuera de plazo?"},
    ]
    assert reply(messages, "3") == reply(messages, "3")
    assert len({reply(messages, str(k)) for k in range(8)}) > 1


async def test_the_judge_credits_answers_the_other_verified_facts_support() -> None:
    # the rubric: faithful to the reference *or the other verified facts*; a referral to a covered
    # question is not helpful. The offline judge scores the same way, if coarsely.
    reference = CONTINUING
    other = "La solicitud de matrícula fuera de plazo se presenta en el registro electrónico dirigida al Decanato."
    conversation = [
        {"role": "user", "content": "¿Cuándo me matriculo y dónde entrego la solicitud fuera de plazo?"}
    ]
    prompts = PromptLibrary("es")
    async with ChatClient(offline=True) as client:

        async def score(answer: str) -> float:
            graded = await grade(
                client,
                JUDGE,
                conversation=conversation,
                answer=answer,
                reference=reference,
                facts=other,
                prompts=prompts,
            )
            return graded.score

        from_reference, from_other_facts, referral = (
            await score(reference),
            await score(other),
            await score(REFERRAL),
        )
    assert from_reference >= 8.0
    assert from_other_facts >= 6.0  # the preference generator's default min_chosen_score
    assert referral <= 4.5
    assert min(from_reference, from_other_facts) - referral >= 2.0
