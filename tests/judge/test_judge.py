"""Rubric grading over real HTTP (loopback server) and through the offline provider."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from synthgen.judge.rubric import WEIGHTS, RubricScores, grade
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from tests.servers.openai_server import OpenAIServer, ServerConfig

KEY_ENV = "SYNTHGEN_TEST_JUDGE_KEY"
REFERENCE = (
    "La matrícula de continuación se hace por automatrícula en la sede electrónica del 28 de julio al "
    "12 de septiembre. La cita de matrícula se consulta desde el 21 de julio."
)
CONVERSATION = [
    {"role": "system", "content": "Eres el asistente de la Facultad de Ciencias."},
    {"role": "user", "content": "¿Cuándo es el plazo de matrícula para estudiantes de continuación?"},
]


def rubric(f: int, h: int, c: int, t: int, rationale: str = "Respaldada por la referencia.") -> str:
    return json.dumps(
        {
            "rationale": rationale,
            "faithfulness_score": f,
            "helpfulness_score": h,
            "completeness_score": c,
            "tone_score": t,
        }
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with OpenAIServer(ServerConfig()) as srv:
        yield srv


def judge_profile(srv: OpenAIServer) -> ModelProfile:
    return ModelProfile(
        name="judge", model="judge-model", base_url=srv.url, api_key_env=KEY_ENV, temperature=0
    )


async def test_score_is_weighted_mean_and_rationale_kept(server: OpenAIServer) -> None:
    requests: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str:
        requests.append(body)
        return rubric(9, 6, 7, 8, "Cita bien el plazo; falta la cita previa.")

    server.update_config(responder=responder)
    async with ChatClient() as client:
        result = await grade(
            client,
            judge_profile(server),
            conversation=CONVERSATION,
            answer="Del 28 de julio al 12 de septiembre.",
            reference=REFERENCE,
            prompts=PromptLibrary("es"),
        )
    assert result.score == pytest.approx((2 * 9 + 6 + 7 + 8) / 5)
    assert result.scores == {"faithfulness": 9, "helpfulness": 6, "completeness": 7, "tone": 8}
    assert result.rationale == "Cita bien el plazo; falta la cita previa."
    assert result.judge_model.startswith("judge-model") and not result.cached
    body = requests[0]
    assert body["temperature"] == 0
    assert body["response_format"]["json_schema"]["name"] == "RubricScores"
    props = list(body["response_format"]["json_schema"]["schema"]["properties"])
    assert props[0] == "rationale"  # reason before scoring
    content = body["messages"][-1]["content"]
    assert re.search(r"<answer>\s*Del 28 de julio al 12 de septiembre.\s*</answer>", content)
    assert "<reference>\n" + REFERENCE + "\n</reference>" in content
    assert CONVERSATION[1]["content"] in content


async def test_schema_violation_is_reasked(server: OpenAIServer) -> None:
    requests: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str:
        requests.append(body)
        return rubric(11, 5, 5, 5) if len(requests) == 1 else rubric(4, 5, 6, 7)

    server.update_config(responder=responder)
    async with ChatClient() as client:
        result = await grade(
            client,
            judge_profile(server),
            conversation=CONVERSATION,
            answer="No lo sé.",
            reference=REFERENCE,
            prompts=PromptLibrary("es"),
        )
    assert len(requests) == 2
    assert "did not validate" in requests[1]["messages"][-1]["content"]
    assert result.scores["faithfulness"] == 4
    assert result.score == pytest.approx((2 * 4 + 5 + 6 + 7) / 5)


async def test_offline_judge_prefers_the_reference() -> None:
    profile = ModelProfile(name="judge", model="judge-model", temperature=0)
    async with ChatClient(offline=True) as client:
        same, unrelated = [
            await grade(
                client,
                profile,
                conversation=CONVERSATION,
                answer=answer,
                reference=REFERENCE,
                prompts=PromptLibrary("es"),
            )
            for answer in (REFERENCE, "Los horarios del comedor universitario cambian en verano por obras.")
        ]
    assert same.score > unrelated.score + 3
    assert same.rationale and same.judge_model.startswith("judge-model")


@pytest.mark.parametrize("language", ["es", "en"])
def test_rubric_template_has_one_answer_block(language: str) -> None:
    # The offline judge and any tag-reading tooling take the first <answer>/<reference> block.
    text = PromptLibrary(language).render(
        "judge_rubric", conversation="[user]\nq", reference="R", facts="", answer="A", language=language
    )
    assert text.count("<answer>") == text.count("<reference>") == 1
    for name in WEIGHTS:
        assert RubricScores.model_fields[name].alias in text


async def test_conversation_must_end_with_user() -> None:
    async with ChatClient(offline=True) as client:
        with pytest.raises(ValueError, match="user turn"):
            await grade(
                client,
                ModelProfile(model="judge-model"),
                conversation=[*CONVERSATION, {"role": "assistant", "content": "x"}],
                answer="a",
                reference="r",
                prompts=PromptLibrary("es"),
            )
