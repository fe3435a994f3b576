"""The preference generator: candidates, grading, pair selection, prompts from seeds and dialogues.

Scripted runs go through the loopback server: candidate requests answer ``respuesta K`` (K is the
sample index, recovered from the ``seed`` parameter) and judge requests score the candidate found in
``<answer>``, so which pair comes out is known in advance. Determinism and prefixes use the offline
provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from synthgen.generators.base import GeneratorContext, Rejected, WorkItem
from synthgen.generators.preference import PreferenceGenerator
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from synthgen.records import PreferenceRow, prompt_id
from synthgen.seeds import Seed
from tests.servers.openai_server import OpenAIServer, ServerConfig

KEY_ENV = "SYNTHGEN_TEST_PREFS_KEY"
SYSTEM = "Eres el asistente virtual de la Facultad de Ciencias. Responde con amabilidad."
SEED_BASE = 100  # the candidate profile's seed: the request's ``seed`` is SEED_BASE + sample index
SEEDS = [
    Seed(
        id="mat-plazo",
        topic="matricula",
        question="¿Cuándo es el plazo de matrícula de continuación?",
        answer="La matrícula de continuación se hace por automatrícula del 28 de julio al 12 de septiembre.",
    ),
    Seed(
        id="mat-creditos",
        topic="matricula",
        question="¿De cuántos créditos me tengo que matricular?",
        answer="A partir del segundo curso hay que matricularse de un mínimo de 48 créditos ECTS.",
    ),
    Seed(
        id="mat-anular",
        topic="matricula",
        question="¿Puedo anular la matrícula si ya he pagado?",
        answer="La anulación total de matrícula se pide antes del 31 de octubre y da derecho a devolución.",
    ),
    Seed(
        id="beca-plazo",
        topic="becas",
        question="¿Hasta cuándo puedo pedir la beca del ministerio?",
        answer="La beca general del ministerio se solicita en su sede electrónica hasta el 15 de mayo.",
    ),
]
SPLITS = {"mat-plazo": "train", "mat-creditos": "test", "mat-anular": "train", "beca-plazo": "train"}


def rubric(score: int) -> str:
    return json.dumps(
        {
            "rationale": f"vale {score}",
            "faithfulness_score": score,
            "helpfulness_score": score,
            "completeness_score": score,
            "tone_score": score,
        }
    )


class Script:
    """Responder: records every request; scores candidate K with ``scores[K]``."""

    def __init__(self) -> None:
        self.scores: dict[int, int] = {}
        self.requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> str:
        self.requests.append(body)
        if body.get("response_format"):
            answer = re.search(r"<answer>\s*(.*?)\s*</answer>", body["messages"][-1]["content"], re.S)
            assert answer is not None
            return rubric(self.scores[int(answer.group(1).split()[-1])])
        return f"respuesta {body['seed'] - SEED_BASE}"

    def candidate_requests(self) -> dict[int, dict[str, Any]]:
        return {b["seed"] - SEED_BASE: b for b in self.requests if not b.get("response_format")}


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Script, OpenAIServer]]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    responder = Script()
    with OpenAIServer(ServerConfig(responder=responder)) as srv:
        yield responder, srv


def profiles(base_url: str | None = None) -> dict[str, ModelProfile]:
    common: dict[str, Any] = {"base_url": base_url, "api_key_env": KEY_ENV}
    return {
        "assistant": ModelProfile(
            name="assistant", model="cand-model", temperature=0.7, seed=SEED_BASE, **common
        ),
        "judge": ModelProfile(name="judge", model="judge-model", temperature=0, **common),
    }


def context(
    client: ChatClient, base_url: str | None = None, grounding: Any = "closed_book"
) -> GeneratorContext:
    return GeneratorContext(
        client=client,
        profiles=profiles(base_url),
        seeds={s.id: s for s in SEEDS},
        personas=[],
        prompts=PromptLibrary("es"),
        language="es",
        system_prompt=SYSTEM,
        grounding=grounding,
        recipe_seed=13,
        step="prefs",
        version="1",
        splits=SPLITS,
    )


def generator(**config: Any) -> PreferenceGenerator:
    return PreferenceGenerator(PreferenceGenerator.Config(**config))


def items(gen: PreferenceGenerator, upstream: list[dict[str, Any]] | None = None) -> list[WorkItem]:
    return gen.plan(SEEDS, SPLITS, 13, "prefs", upstream or ())


async def test_chosen_is_best_and_rejected_at_least_margin_below(script: tuple[Script, OpenAIServer]) -> None:
    responder, srv = script
    responder.scores = {0: 9, 1: 3, 2: 8, 3: 5}
    gen = generator(margin=2.0)
    async with ChatClient() as client:
        ctx = context(client, srv.url)
        rows = [row for item in items(gen) for row in await gen.generate(item, ctx)]
    assert len(rows) == len(SEEDS)
    for row, seed in zip(rows, SEEDS, strict=True):
        PreferenceRow.model_validate(row)
        assert row["chosen"] == [{"role": "assistant", "content": "respuesta 0"}]
        assert row["score_chosen"] == 9
        assert row["rejected"][0]["content"] in ("respuesta 1", "respuesta 3")  # 8 is only 1 below
        assert row["score_rejected"] <= row["score_chosen"] - 2
        assert row["prompt"] == [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": seed.question},
        ]
        assert row["prompt_id"] == prompt_id(row["prompt"])
        assert row["seed_ids"][0] == seed.id and row["topic"] == seed.topic
        assert {SPLITS[i] for i in row["seed_ids"]} == {SPLITS[seed.id]}  # related facts from its split only
        assert [c["score"] for c in row["candidates"]] == [9, 3, 8, 5]
        assert [c["variant"] for c in row["candidates"]] == [
            "assistant/grounded/t=0.7",
            "assistant/ungrounded/t=0.7",
        ] * 2
        assert row["candidates"][0]["rationale"] == "vale 9"
        assert row["judge_model"].startswith("judge-model") and row["generator"] == "preference"


async def test_tie_and_all_bad_are_rejected(script: tuple[Script, OpenAIServer]) -> None:
    responder, srv = script
    gen = generator()
    async with ChatClient() as client:
        ctx = context(client, srv.url)
        item = items(gen)[0]
        responder.scores = {0: 8, 1: 8, 2: 8, 3: 8}
        with pytest.raises(Rejected) as tie:
            await gen.generate(item, ctx)
        responder.scores = {0: 5, 1: 2, 2: 3, 3: 1}
        with pytest.raises(Rejected) as bad:
            await gen.generate(item, ctx)
    assert tie.value.reason == "tie" and bad.value.reason == "all_bad"


async def test_only_grounded_candidates_see_the_facts(script: tuple[Script, OpenAIServer]) -> None:
    responder, srv = script
    responder.scores = {0: 9, 1: 2, 2: 7, 3: 4}
    pool = [{"profile": "assistant"}, {"profile": "assistant", "grounded": False, "temperature": 1.2}]
    gen = generator(pool=pool)
    async with ChatClient() as client:
        [row] = await gen.generate(items(gen)[0], context(client, srv.url))
    requests = responder.candidate_requests()
    assert sorted(requests) == [0, 1, 2, 3]  # distinct samples although the pool repeats
    for k, body in requests.items():
        system = body["messages"][0]["content"]
        if k % 2 == 0:
            assert "<facts>" in system and SEEDS[0].answer in system and SEEDS[2].answer in system
            assert SEEDS[1].answer not in system  # same topic, but a test seed
            assert SEEDS[3].answer not in system  # another topic
            assert body["temperature"] == 0.7
        else:
            assert "<facts>" not in system and system == SYSTEM
            assert body["temperature"] == 1.2
        assert body["messages"][1:] == [{"role": "user", "content": SEEDS[0].question}]
    assert row["candidates"][1]["variant"] == "assistant/ungrounded/t=1.2"
    judged = [b for b in responder.requests if b.get("response_format")]
    assert len(judged) == 4
    for body in judged:  # the seed's answer is the reference; its related seeds are extra facts
        content = body["messages"][-1]["content"]
        assert f"<reference>\n{SEEDS[0].answer}\n</reference>" in content
        assert f"<facts>\n{SEEDS[2].answer}\n</facts>" in content and "español" in content
    assert row["seed_ids"] == ["mat-plazo", "mat-anular"]


async def test_offline_rows_are_deterministic() -> None:
    gen = generator(margin=0.0, min_chosen_score=1.0)
    item = items(gen)[0]
    rows = []
    for _ in range(2):
        async with ChatClient(offline=True) as client:
            rows.append(await gen.generate(item, context(client)))
    assert rows[0] == rows[1]
    PreferenceRow.model_validate(rows[0][0])
    assert rows[0][0]["prompt"][-1]["role"] == "user"


def dialogue(i: int) -> dict[str, Any]:
    seed = SEEDS[i % len(SEEDS)]
    messages = [{"role": "system", "content": SYSTEM}]
    for turn in range(3):
        messages += [
            {"role": "user", "content": f"{seed.question} ({turn})"},
            {"role": "assistant", "content": f"{seed.answer} ({turn})"},
        ]
    return {
        "messages": messages,
        "seed_ids": [seed.id],
        "dialogue_id": f"d{i}",
        "topic": seed.topic,
        "prompt_id": "x",
        "persona": "p",
        "generator": "dialogue",
        "model": "m",
    }


@pytest.mark.parametrize("mode", ["random", "last"])
async def test_upstream_dialogues_give_prefix_prompts(mode: str) -> None:
    upstream = [dialogue(i) for i in range(8)]
    gen = generator(margin=0.0, min_chosen_score=1.0, context=mode)
    planned = items(gen, upstream)
    assert [w.id for w in planned] == [f"d{i}" for i in range(8)]
    assert [w.split for w in planned] == [SPLITS[SEEDS[i % len(SEEDS)].id] for i in range(8)]
    lengths = set()
    async with ChatClient(offline=True) as client:
        ctx = context(client)
        for item, source in zip(planned, upstream, strict=True):
            [row] = await gen.generate(item, ctx)
            prompt = row["prompt"]
            assert prompt == source["messages"][: len(prompt)] and prompt[-1]["role"] == "user"
            assert row["seed_ids"] == source["seed_ids"] and row["topic"] == source["topic"]
            lengths.add(len(prompt))
    assert lengths == ({2, 4, 6} if mode == "random" else {6})


async def test_in_context_grounding_publishes_the_facts() -> None:
    gen = generator(margin=0.0, min_chosen_score=1.0)
    async with ChatClient(offline=True) as client:
        [row] = await gen.generate(items(gen)[0], context(client, grounding="in_context"))
    system = row["prompt"][0]["content"]
    assert system.startswith(SYSTEM) and "<facts>" in system and SEEDS[0].answer in system


def test_config_and_declarations() -> None:
    gen = generator(pool=[{"profile": "tutor", "grounded": False}], judge="grader")
    assert gen.profiles_used() == ["grader", "tutor"]
    assert gen.prompt_roles() == ["judge_rubric"]
    assert generator().prompt_roles() == ["assistant", "judge_rubric"]
    for role in generator().prompt_roles():
        for language in ("es", "en"):
            assert PromptLibrary(language).get(role).version == 1
    for bad in (
        {"candidates": 1},
        {"candidates": 17},
        {"margin": -1},
        {"pool": []},
        {"context": "first"},
        {"pool": [{"profile": "a", "extra": 1}]},
        {"unknown": 1},
    ):
        with pytest.raises(pydantic.ValidationError):
            generator(**bad)
