"""The evaluation modes of the judge over real HTTP (loopback server) and the offline provider.

The server is scripted to answer known verdicts; what is asserted is what the modes do with them:
the request each mode sends (schema, template, the graded text in the right block), the swap rule of
pairwise comparisons, claim precision/recall/contradictions, and that an answer that never parses
surfaces as a CompletionFailed the caller can count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from synthgen.errors import CompletionFailed
from synthgen.evaluation.stats import claim_share
from synthgen.judge.claims import ClaimCheck, check_claims, verify_claims, verify_reference_claims
from synthgen.judge.modes import combine_orders, compare, grade_single, judge_abstention, judge_coverage
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from tests.servers.openai_server import OpenAIServer, ServerConfig

KEY_ENV = "SYNTHGEN_TEST_JUDGE_KEY"
REFERENCE = (
    "La matrícula de continuación se hace por automatrícula en la sede electrónica del 28 de julio al "
    "12 de septiembre. La cita de matrícula se consulta desde el 21 de julio."
)
QUESTION = [{"role": "user", "content": "¿Cuándo es el plazo de matrícula para estudiantes de continuación?"}]
GOOD = "Del 28 de julio al 12 de septiembre, por automatrícula en la sede electrónica."
BAD = "Hasta el 30 de junio, en la ventanilla de la Secretaría."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with OpenAIServer(ServerConfig()) as srv:
        yield srv


def judge(srv: OpenAIServer, **extra: Any) -> ModelProfile:
    return ModelProfile(
        name="judge", model="judge-model", base_url=srv.url, api_key_env=KEY_ENV, temperature=0, **extra
    )


def block(body: dict[str, Any], tag: str) -> str:
    found = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", body["messages"][0]["content"], re.S)
    assert found, f"no <{tag}> block"
    return found.group(1).strip()


def schema_name(body: dict[str, Any]) -> str:
    return str(body["response_format"]["json_schema"]["name"])


async def test_single_grade_sends_the_answer_in_context_and_keeps_score_and_rationale(
    server: OpenAIServer,
) -> None:
    requests: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str:
        requests.append(body)
        return json.dumps({"rationale": "Fechas correctas.", "score": 9})

    server.update_config(responder=responder)
    follow_up = [*QUESTION, {"role": "assistant", "content": GOOD}, {"role": "user", "content": "¿Y dónde?"}]
    async with ChatClient() as client:
        single = await grade_single(
            client,
            judge(server),
            conversation=QUESTION,
            answer=GOOD,
            reference=REFERENCE,
            prompts=PromptLibrary("es"),
        )
        multi = await grade_single(
            client,
            judge(server),
            conversation=follow_up,
            answer="En la sede electrónica.",
            reference=REFERENCE,
            facts="Otro hecho.",
            prompts=PromptLibrary("es"),
        )
    assert (single.verdict.score, single.verdict.rationale) == (9, "Fechas correctas.")
    assert single.judge_model.startswith("judge-model") and not single.cached
    first, second = requests
    assert schema_name(first) == "SingleGrade"
    assert list(first["response_format"]["json_schema"]["schema"]["properties"]) == ["rationale", "score"]
    assert block(first, "answer") == GOOD and block(first, "reference") == REFERENCE
    assert block(first, "facts") == ""
    # multi-turn: the whole dialogue is context, only the last answer is graded
    assert GOOD in block(second, "conversation") and "¿Y dónde?" in block(second, "conversation")
    assert block(second, "answer") == "En la sede electrónica." and block(second, "facts") == "Otro hecho."
    assert multi.verdict.score == 9


async def test_single_grade_rejects_a_conversation_not_ending_with_the_student() -> None:
    async with ChatClient(offline=True) as client:
        with pytest.raises(ValueError, match="end with a user turn"):
            await grade_single(
                client,
                ModelProfile(model="m"),
                conversation=[*QUESTION, {"role": "assistant", "content": GOOD}],
                answer=GOOD,
                reference=REFERENCE,
                prompts=PromptLibrary("es"),
            )


@pytest.mark.parametrize(
    ("first", "second", "winner", "consistent"),
    [
        ("A", "B", "x", True),  # x preferred in both orders
        ("B", "A", "y", True),  # y preferred in both orders
        ("A", "A", "tie", False),  # position bias: x in one order, y in the other
        ("B", "B", "tie", False),
        ("tie", "tie", "tie", True),
        ("A", "tie", "tie", False),  # a win needs both orders
        ("tie", "A", "tie", False),
    ],
)
def test_combine_orders_maps_positions_to_models_and_ties_disagreements(
    first: str, second: str, winner: str, consistent: bool
) -> None:
    assert combine_orders(first, second) == (winner, consistent)


async def test_pairwise_both_orders_against_a_fair_and_a_position_biased_judge(server: OpenAIServer) -> None:
    bias = {"on": False}

    def responder(body: dict[str, Any]) -> str:
        assert schema_name(body) == "PairwiseVerdict"
        a, b = block(body, "answer_a"), block(body, "answer_b")
        winner = "A" if bias["on"] else ("A" if a == GOOD else "B" if b == GOOD else "tie")
        return json.dumps({"rationale": "r", "winner": winner})

    server.update_config(responder=responder)
    common = {"conversation": QUESTION, "reference": REFERENCE, "prompts": PromptLibrary("es")}
    async with ChatClient() as client:
        profile = judge(server)
        one = await compare(client, profile, answer_a=GOOD, answer_b=BAD, **common)
        two = await compare(client, profile, answer_a=BAD, answer_b=GOOD, **common)
        assert combine_orders(one.verdict.winner, two.verdict.winner) == ("x", True)  # GOOD is x
        bias["on"] = True
        one = await compare(client, profile, answer_a=GOOD, answer_b=BAD, facts="f", **common)
        two = await compare(client, profile, answer_a=BAD, answer_b=GOOD, facts="f", **common)
        assert combine_orders(one.verdict.winner, two.verdict.winner) == ("tie", False)


async def test_claim_precision_recall_and_contradictions_from_both_directions(server: OpenAIServer) -> None:
    seen: list[tuple[str, str, str]] = []

    def responder(body: dict[str, Any]) -> str:
        text = body["messages"][0]["content"]
        seen.append((schema_name(body), block(body, "reference"), block(body, "answer")))
        if "Divide la RESPUESTA OFICIAL" in text:  # recall: the reference's claims against the answer
            verdicts = ["supported", "not_in_reference", "not_in_reference"]
        else:  # precision: the answer's claims against the reference
            verdicts = ["supported", "supported", "contradicted", "not_in_reference"]
        return json.dumps({"claims": [{"claim": f"c{i}", "verdict": v} for i, v in enumerate(verdicts)]})

    server.update_config(responder=responder)
    async with ChatClient() as client:
        kwargs: dict[str, Any] = {"answer": BAD, "reference": REFERENCE, "prompts": PromptLibrary("es")}
        answer_claims = await check_claims(client, judge(server), **kwargs)
        reference_claims = await verify_reference_claims(client, judge(server), **kwargs)
        plain = await verify_claims(client, judge(server), **kwargs)  # unchanged API, same request
    answer = answer_claims.verdict.model_dump()
    reference = reference_claims.verdict.model_dump()
    assert claim_share(answer, "supported") == pytest.approx(2 / 4)  # precision
    assert claim_share(answer, "contradicted") == pytest.approx(1 / 4)  # contradiction rate
    assert claim_share(reference, "supported") == pytest.approx(1 / 3)  # recall
    assert claim_share({"claims": []}, "supported") is None  # a pure referral has no precision
    assert isinstance(plain, ClaimCheck) and plain == answer_claims.verdict
    # both directions put the gold answer in <reference> and the graded answer in <answer>
    assert seen[0][1:] == seen[1][1:] == (REFERENCE, BAD)
    assert len(seen) == 3 and seen[0] == seen[2]  # verify_claims sends exactly check_claims' request


async def test_abstention_and_coverage_verdicts(server: OpenAIServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        if schema_name(body) == "AbstentionVerdict":
            assert "fútbol" in block(body, "question")
            return json.dumps({"rationale": "Remite.", "declined": True, "referred": False})
        assert block(body, "reference") == REFERENCE
        return json.dumps({"rationale": "Bien.", "verdict": "correct"})

    server.update_config(responder=responder)
    async with ChatClient() as client:
        kwargs: dict[str, Any] = {"answer": "No lo sé.", "prompts": PromptLibrary("es")}
        abstention = await judge_abstention(
            client, judge(server), question="¿Quién ganó al fútbol?", **kwargs
        )
        coverage = await judge_coverage(
            client, judge(server), question="¿Matrícula?", facts=REFERENCE, **kwargs
        )
    assert abstention.verdict.declined and not abstention.verdict.referred
    assert not abstention.verdict.abstained  # declining without referring is not enough
    assert coverage.verdict.verdict == "correct"


async def test_an_answer_that_never_parses_raises_after_the_reasks(server: OpenAIServer) -> None:
    calls: list[int] = []

    def responder(body: dict[str, Any]) -> str:
        calls.append(len(body["messages"]))
        return "Claro: la puntuación es 7 {"

    server.update_config(responder=responder)
    async with ChatClient() as client:
        with pytest.raises(CompletionFailed) as failed:
            await grade_single(
                client,
                judge(server, max_reasks=2),
                conversation=QUESTION,
                answer=GOOD,
                reference=REFERENCE,
                prompts=PromptLibrary("es"),
            )
    assert failed.value.reason == "invalid_json"
    assert calls == [1, 3, 5]  # the first ask and two re-asks, each with the error appended


async def test_offline_single_grades_favour_the_grounded_answer() -> None:
    async with ChatClient(offline=True) as client:
        profile = ModelProfile(name="judge", model="gpt-4o-2024-08-06", temperature=0)
        kwargs: dict[str, Any] = {
            "conversation": QUESTION,
            "reference": REFERENCE,
            "prompts": PromptLibrary("es"),
        }
        grounded = await grade_single(client, profile, answer=REFERENCE, **kwargs)
        ungrounded = await grade_single(client, profile, answer="Pregunta en conserjería mañana.", **kwargs)
    assert grounded.verdict.score > ungrounded.verdict.score
