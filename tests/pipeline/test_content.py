"""Content rules through the whole runner, on scripted replies from the loopback server.

Each seed gets one scripted misbehaviour (a role flip, an English answer, a hidden-context
reference, the student leaking the answer, an invented fact caught by claim verification); each
must end in .synthgen/rejected.jsonl with the right reason, and the clean seed must become a row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from synthgen import load_recipe, run
from tests.servers.openai_server import OpenAIServer, ServerConfig

ANSWERS = {
    "limpio": "La matrícula ordinaria se realiza del 15 al 31 de julio en la sede electrónica de la universidad.",
    "flip": "El certificado académico se solicita en la sede electrónica y se emite en diez días hábiles.",
    "ingles": "La biblioteca abre de lunes a viernes de ocho y media a nueve de la noche.",
    "oculto": "El título se solicita tras superar todos los créditos, pagando la tasa de expedición.",
    "fuga": "Las prácticas externas curriculares valen doce créditos y se solicitan en el mes de septiembre.",
    "invento": "La anulación total de matrícula se pide antes del 31 de octubre con devolución de las tasas.",
}
QUESTIONS = {
    "limpio": "¿Cuándo es la matrícula ordinaria?",
    "flip": "¿Cómo pido un certificado académico?",
    "ingles": "¿Qué horario tiene la biblioteca?",
    "oculto": "¿Cómo solicito el título?",
    "fuga": "¿Cuántos créditos valen las prácticas?",
    "invento": "¿Hasta cuándo puedo anular la matrícula?",
}
REPLIES = {
    "limpio": "La matrícula ordinaria es del 15 al 31 de julio y se hace en la sede electrónica de la universidad.",
    "flip": "Hola, soy estudiante de primero y tengo una duda sobre los certificados, ¿me podéis ayudar?",
    "ingles": "The library is open from Monday to Friday, from half past eight in the morning until nine pm.",
    "oculto": "Según la información proporcionada, el título se solicita tras superar todos los créditos.",
    "fuga": "Las prácticas curriculares valen doce créditos y se solicitan en septiembre, como te digo.",
    "invento": "Puedes anular la matrícula hasta el 31 de octubre y además te devuelven el doble de las tasas.",
}


def seed_of(text: str) -> str:
    return next(s for s, q in QUESTIONS.items() if q in text)


def responder(request: dict[str, Any]) -> Any:
    text = "\n".join(str(m.get("content") or "") for m in request["messages"])
    if "<seed_question>" in text:  # the student simulator
        seed = seed_of(re.search(r"<seed_question>(.*?)</seed_question>", text, re.S).group(1))  # type: ignore[union-attr]
        message = {
            "fuga": f"Hola, me han dicho que {ANSWERS['fuga'].lower()} ¿Es así?",
        }.get(seed, "Hola, tengo una duda: " + QUESTIONS[seed].lower())
        return {"content": {"message": message, "satisfied": False}}
    if "<reference>" in text and '"claims"' in json.dumps(request.get("response_format", {})):
        answer = re.search(r"<answer>(.*?)</answer>", text, re.S).group(1)  # type: ignore[union-attr]
        verdict = "not_in_reference" if "el doble" in answer else "supported"
        return {"content": {"claims": [{"claim": answer.strip()[:80], "verdict": verdict}]}}
    if "<facts>" in text:  # the assistant
        return REPLIES[seed_of(text)]
    return None


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    seeds = [
        {"id": s, "topic": f"tema-{s}", "question": QUESTIONS[s], "answer": ANSWERS[s]} for s in QUESTIONS
    ]
    (tmp_path / "seeds.yaml").write_text(
        yaml.safe_dump({"language": "es", "seeds": seeds}, allow_unicode=True)
    )
    recipe = {
        "name": "content",
        "language": "es",
        "seed": 1,
        "seeds": "seeds.yaml",
        "system_prompt": "Eres el asistente de la Facultad de Ciencias.",
        "models": {
            "student": {"model": "gpt-4o-mini-2024-07-18"},
            "assistant": {"model": "gpt-4o-2024-08-06"},
            "judge": {"model": "gpt-4o-2024-08-06", "temperature": 0},
        },
        "steps": [
            {
                "name": "dialogues",
                "generator": "dialogue",
                "config": {"per_seed": 1, "turns": [1, 1], "related_seeds": 0},
            }
        ],
        "quality": {"verify_claims": "judge"},
        "output": {"test_fraction": 0},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    return path


def test_each_scripted_misbehaviour_is_rejected_with_its_reason(
    recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIServer(ServerConfig(responder=responder)) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        result = run(load_recipe(recipe_file), out=tmp_path / "run")
    rejected = [json.loads(line) for line in (tmp_path / "run" / ".synthgen" / "rejected.jsonl").open()]
    reasons = {r["item"].split("/")[0]: r["reason"] for r in rejected}
    assert reasons == {
        "flip": "role_flip",
        "ingles": "language",
        "oculto": "hidden_context",
        "fuga": "answer_leak",
        "invento": "unsupported_claim",
    }
    counts = result.steps["dialogues"]
    assert (counts.items, counts.ok, counts.rejected, counts.failed) == (6, 1, 5, 0)
    rows = datasets.load_dataset(str(tmp_path / "run"), "sft")["train"]
    assert rows["seed_ids"] == [["limpio"]]
    messages = rows[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[0]["content"] == "Eres el asistente de la Facultad de Ciencias."  # closed-book
    assert messages[1]["content"] != QUESTIONS["limpio"]  # reworded, not the seed verbatim
