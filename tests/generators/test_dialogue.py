"""The dialogue generator: row shape, determinism, turn bounds, grounding and the student guards.

Offline tests run the real client over the embedded provider; scripted ones run it against the
loopback OpenAI server, whose responder also records what the generator actually sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest

from synthgen.errors import ConfigError
from synthgen.generators.base import GeneratorContext, Rejected, WorkItem
from synthgen.generators.dialogue import DialogueGenerator
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.prompts import PromptLibrary
from synthgen.records import DialogueRow, prompt_id
from synthgen.seeds import Persona, Seed
from tests.servers.openai_server import OpenAIServer, ServerConfig

SYSTEM_PROMPT = "Eres el asistente virtual de la Facultad de Ciencias. Responde con claridad."
_SEED_ROWS = [
    ("mat-01", "matricula", "¿Cuándo es el plazo de matrícula para estudiantes de continuación?",
     "Los estudiantes de continuación se matriculan en la sede electrónica del 28 de julio al 12 de "
     "septiembre. Cada estudiante tiene una cita de matrícula asignada según sus créditos."),
    ("mat-02", "matricula", "Trabajo por las tardes. ¿Puedo matricularme a tiempo parcial?",
     "La dedicación a tiempo parcial se solicita al formalizar la matrícula y hasta el 15 de octubre, "
     "acreditando la actividad laboral con un contrato."),
    ("mat-03", "matricula", "¿Se pueden añadir asignaturas del segundo cuatrimestre?",
     "La matrícula puede ampliarse del 3 al 14 de febrero para añadir asignaturas del segundo cuatrimestre."),
    ("mat-04", "matricula", "¿Puedo cambiarme de grupo de prácticas?",
     "Los cambios de grupo se solicitan en la sede electrónica del 1 al 15 de octubre."),
    ("bib-01", "biblioteca", "¿Qué horario tiene la biblioteca en época de exámenes?",
     "En época de exámenes la Biblioteca de Ciencias abre de lunes a domingo de 8:00 a 2:00."),
    ("bib-02", "biblioteca", "¿Cuántos libros me puedo llevar en préstamo?",
     "Los estudiantes de grado pueden tener en préstamo hasta 8 documentos durante 15 días."),
]  # fmt: skip
SEEDS = [Seed(id=i, topic=t, question=q, answer=a) for i, t, q, a in _SEED_ROWS]
PERSONAS = [
    Persona(
        id="primer-curso", name="Estudiante de primer curso", situation="Acaba de llegar del bachillerato.",
        register="informal", typical_mistakes=("Confunde anulación con ampliación.",),
    ),
    Persona(id="trabajador", name="Estudiante que trabaja", situation="Trabaja de tarde.", urgency="alta"),
    Persona(id="erasmus", name="Estudiante Erasmus", situation="Viene de Italia.", register="formal"),
]  # fmt: skip
SPLITS = {s.id: ("test" if s.id == "mat-04" else "train") for s in SEEDS}
PROFILES = {"student": ModelProfile(name="student", model="gpt-4o-mini"),
            "assistant": ModelProfile(name="assistant", model="gpt-4o")}  # fmt: skip


def make_ctx(client: ChatClient, **changes: Any) -> GeneratorContext:
    values: dict[str, Any] = {
        "client": client, "profiles": PROFILES, "seeds": {s.id: s for s in SEEDS}, "personas": PERSONAS,
        "prompts": PromptLibrary("es"), "language": "es", "system_prompt": SYSTEM_PROMPT,
        "grounding": "closed_book", "recipe_seed": 13, "step": "dialogues", "splits": SPLITS,
    }  # fmt: skip
    return GeneratorContext(**{**values, **changes})


def make_gen(**config: Any) -> DialogueGenerator:
    return DialogueGenerator(DialogueGenerator.Config(**config))


def items_of(gen: DialogueGenerator) -> list[WorkItem]:
    return gen.plan(SEEDS, SPLITS, 13, "dialogues")


def student_turns(row: dict[str, Any]) -> int:
    return sum(m["role"] == "user" for m in row["messages"])


def normalized(text: str) -> str:
    return " ".join(text.casefold().split())


async def generate_all(gen: DialogueGenerator, items: list[WorkItem], **ctx: Any) -> list[dict[str, Any]]:
    async with ChatClient(offline=True) as client:
        context = make_ctx(client, **ctx)
        return [row for item in items for row in await gen.generate(item, context)]


# -- scripted server --------------------------------------------------------------------------------


class Script:
    """Responder for the loopback server: records every request and answers student or assistant calls."""

    def __init__(self, student: Callable[[int], tuple[str, bool]]) -> None:
        self.student = student
        self.student_requests: list[dict[str, Any]] = []
        self.assistant_requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> str:
        if body.get("response_format"):
            self.student_requests.append(body)
            message, satisfied = self.student(len(self.student_requests))
            return json.dumps({"message": message, "satisfied": satisfied})
        self.assistant_requests.append(body)
        return f"Respuesta número {len(self.assistant_requests)}."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("DIALOGUE_TEST_KEY", "sk-test")
    with OpenAIServer(ServerConfig()) as srv:
        yield srv


async def run_scripted(
    srv: OpenAIServer, script: Script, gen: DialogueGenerator, item: WorkItem, **ctx: Any
) -> list[dict[str, Any]]:
    srv.config.responder = script
    profiles = {k: p.model_copy(update={"base_url": srv.url, "api_key_env": "DIALOGUE_TEST_KEY"})
                for k, p in PROFILES.items()}  # fmt: skip
    async with ChatClient() as client:
        return await gen.generate(item, make_ctx(client, profiles=profiles, **ctx))


def asking(n: int) -> tuple[str, bool]:
    return f"Hola, tengo una duda número {n} sobre mi matrícula", False


# -- tests ------------------------------------------------------------------------------------------


def test_plan_is_per_seed_with_stable_ids_and_variants() -> None:
    gen = make_gen(per_seed=3)
    items = items_of(gen)
    assert [i.id for i in items[:3]] == ["mat-01/0", "mat-01/1", "mat-01/2"]
    assert len(items) == 3 * len(SEEDS) and len({i.rng_seed for i in items}) == len(items)
    assert all(i.split == SPLITS[i.seed_ids[0]] for i in items)
    assert [i.payload for i in items[:3]] == [{"variant": 0}, {"variant": 1}, {"variant": 2}]
    assert [i.rng_seed for i in items] == [i.rng_seed for i in items_of(make_gen(per_seed=3))]
    assert gen.profiles_used() == ["student", "assistant"] and gen.prompt_roles() == ["student", "assistant"]


async def test_offline_rows_are_valid_alternating_dialogues_within_the_turn_range() -> None:
    gen = make_gen(per_seed=4, turns=(1, 4))
    items = items_of(gen)
    rows = await generate_all(gen, items)
    assert len(rows) == len(items)
    for item, row in zip(items, rows, strict=True):
        DialogueRow.model_validate(row)
        messages, seed = row["messages"], SEEDS[[s.id for s in SEEDS].index(item.seed_ids[0])]
        assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * (len(messages[1:]) // 2)
        assert len(messages) % 2 == 1 and messages[-1]["role"] == "assistant"
        assert 1 <= student_turns(row) <= 4
        assert normalized(messages[1]["content"]) != normalized(seed.question)
        assert row["prompt_id"] == prompt_id(messages[1]["content"])
        assert row["seed_ids"][0] == seed.id and row["topic"] == seed.topic
        # related facts: same topic and same split (mat-04 is a test seed: never a train fact)
        same = {s.id for s in SEEDS if s.topic == seed.topic and SPLITS[s.id] == SPLITS[seed.id]}
        assert set(row["seed_ids"][1:]) <= same - {seed.id}
        assert row["persona"] in {p.id for p in PERSONAS}
        assert row["generator"] == "dialogue" and row["model"].startswith("gpt-4o-")
    assert len({r["dialogue_id"] for r in rows}) == len(rows)
    assert len({r["persona"] for r in rows}) > 1 and len({student_turns(r) for r in rows}) > 1


async def test_same_item_gives_the_same_row() -> None:
    gen = make_gen(per_seed=2)
    item = items_of(gen)[1]
    first, second = await generate_all(gen, [item]), await generate_all(gen, [item])
    assert first == second


async def test_no_personas_uses_a_neutral_default_and_a_filter_restricts_them() -> None:
    gen = make_gen(per_seed=2, turns=(1, 1))
    rows = await generate_all(gen, items_of(gen)[:4], personas=[])
    assert {r["persona"] for r in rows} == {"default"}
    only = make_gen(per_seed=2, turns=(1, 1), personas=["erasmus"])
    rows = await generate_all(only, items_of(only)[:4])
    assert {r["persona"] for r in rows} == {"erasmus"}
    unknown = make_gen(per_seed=1, personas=["nadie"])
    with pytest.raises(ConfigError, match="nadie"):
        await generate_all(unknown, items_of(unknown)[:1])


async def test_grounding_publishes_facts_only_in_context_but_the_assistant_always_sees_them(
    server: OpenAIServer,
) -> None:
    gen = make_gen(per_seed=1, turns=(2, 2), related_seeds=1)
    item = items_of(gen)[0]
    answer = SEEDS[0].answer
    for grounding in ("closed_book", "in_context"):
        script = Script(asking)
        [row] = await run_scripted(server, script, gen, item, grounding=grounding)
        published = row["messages"][0]["content"]
        if grounding == "closed_book":
            assert published == SYSTEM_PROMPT
        else:
            assert published.startswith(SYSTEM_PROMPT + "\n\n<facts>") and answer in published
        assert len(script.assistant_requests) == 2
        for request in script.assistant_requests:
            system = request["messages"][0]
            assert system["role"] == "system" and SYSTEM_PROMPT in system["content"]
            assert "<facts>" in system["content"] and answer in system["content"]
            related = row["seed_ids"][1]
            assert SEEDS[[s.id for s in SEEDS].index(related)].answer in system["content"]
        # the assistant saw the real conversation as user/assistant turns, not a transcript
        assert script.assistant_requests[1]["messages"][1:] == row["messages"][1:4]
        student = script.student_requests[0]["messages"][0]["content"]
        assert "<seed_question>\n" + SEEDS[0].question in student and "<history>\n\n</history>" in student
        assert "Tú: Hola, tengo una duda número 1" in script.student_requests[1]["messages"][0]["content"]
        assert row["model"] == "gpt-4o"


async def test_items_of_one_seed_send_distinct_student_prompts(server: OpenAIServer) -> None:
    """Every call uses sample=0, so only distinct prompts keep per_seed dialogues from being cache copies."""
    gen = make_gen(per_seed=6, turns=(1, 1))
    script = Script(asking)
    for item in items_of(gen)[:6]:
        await run_scripted(server, script, gen, item)
    prompts = [r["messages"][0]["content"] for r in script.student_requests]
    assert len(prompts) == 6 and len(set(prompts)) == 6


async def test_verbatim_seed_question_is_reasked_once_then_rejected(server: OpenAIServer) -> None:
    gen = make_gen(per_seed=1, turns=(1, 1))
    item = items_of(gen)[0]
    echo = "  " + SEEDS[0].question.upper().replace(" ", "   ") + " "
    script = Script(lambda n: (echo, False))
    server.reset()
    with pytest.raises(Rejected) as caught:
        await run_scripted(server, script, gen, item)
    assert caught.value.reason == "verbatim_seed_question" and len(script.student_requests) == 2
    assert server.stats()["duplicates"] == 0  # the re-ask is another sample, not a cached repeat
    assert not script.assistant_requests
    recovered = Script(lambda n: (echo, False) if n == 1 else asking(n))
    [row] = await run_scripted(server, recovered, gen, item)
    assert row["messages"][1]["content"] == asking(2)[0]


async def test_satisfied_stops_early_but_never_before_min_turns(server: OpenAIServer) -> None:
    items = items_of(make_gen(per_seed=1))[:3]
    for low in (1, 2, 3):
        gen = make_gen(per_seed=1, turns=(low, 6))
        for item in items:
            [row] = await run_scripted(server, Script(lambda n: (asking(n)[0], True)), gen, item)
            assert student_turns(row) == low
    counts = set()
    never = make_gen(per_seed=1, turns=(1, 6))
    for item in items_of(make_gen(per_seed=2)):
        [row] = await run_scripted(server, Script(asking), never, item)
        counts.add(student_turns(row))
    assert counts <= set(range(1, 7)) and len(counts) > 1


async def test_english_recipe_uses_english_prompts(server: OpenAIServer) -> None:
    gen = make_gen(per_seed=1, turns=(1, 1))
    script = Script(asking)
    await run_scripted(server, script, gen, items_of(gen)[0], prompts=PromptLibrary("en"), language="en")
    assert "Write in English" in script.student_requests[0]["messages"][0]["content"]
    assert "Answer in English" in script.assistant_requests[0]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"turns": (3, 2)}, "1 <= min <= max <= 12"),
        ({"turns": (0, 2)}, "got \\[0, 2\\]"),
        ({"turns": (1, 20)}, "got \\[1, 20\\]"),
        ({"per_seed": 0}, "greater than or equal to 1"),
        ({"related_seeds": -1}, "greater than or equal to 0"),
        ({"per_seeds": 2}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(config: dict[str, Any], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        DialogueGenerator.Config(**config)
