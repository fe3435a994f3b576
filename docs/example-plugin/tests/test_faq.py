"""Offline tests of the faq generator: no key, no network, deterministic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from synthgen_faq import FaqGenerator

from synthgen import (
    ChatClient,
    DialogueRow,
    GeneratorContext,
    ModelProfile,
    PromptLibrary,
    Seed,
    load_recipe,
    run,
)

SEEDS = [
    Seed(
        id="bib-01",
        topic="biblioteca",
        question="¿Qué horario tiene la biblioteca en época de exámenes?",
        answer="En época de exámenes la Biblioteca de Ciencias abre de lunes a domingo de 8:00 a 2:00.",
    ),
]
SYSTEM = "Eres el asistente virtual de la Facultad de Ciencias."


@pytest.fixture(autouse=True)
def synthgen_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private response cache and log directory: tests never read or fill the real one."""
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "synthgen-home"))


async def generate(**config: Any) -> list[dict[str, Any]]:
    """Plan and generate every item of the generator on the embedded offline provider."""
    gen = FaqGenerator(FaqGenerator.Config(**config))
    items = gen.plan(SEEDS, {s.id: "train" for s in SEEDS}, recipe_seed=13, step="faq")
    async with ChatClient(offline=True) as client:
        ctx = GeneratorContext(
            client=client,
            profiles={"assistant": ModelProfile(name="assistant", model="gpt-4o-mini")},
            seeds={s.id: s for s in SEEDS},
            personas=[],
            prompts=PromptLibrary("es", packages={"faq": "synthgen_faq"}),
            language="es",
            system_prompt=SYSTEM,
            grounding="closed_book",
            recipe_seed=13,
            step="faq",
            version=f"{gen.name}/{gen.version}",
        )
        return [row for item in items for row in await gen.generate(item, ctx)]


def test_rows_are_closed_book_dialogues() -> None:
    rows = asyncio.run(generate(per_seed=2))
    assert len(rows) == 2
    for row in rows:
        DialogueRow.model_validate(row)  # the runner validates the same way
        assert row["messages"][0] == {"role": "system", "content": SYSTEM}  # no facts published
        assert row["messages"][1]["content"] == SEEDS[0].question
        assert "8:00 a 2:00" in row["messages"][2]["content"]  # answered from the <facts> block


def test_same_recipe_seed_same_rows() -> None:
    assert asyncio.run(generate()) == asyncio.run(generate())


def test_recipe_runs_offline(tmp_path: Path) -> None:
    """End to end through the installed entry point: needs `pip install -e .` of the plugin."""
    recipe = load_recipe(Path(__file__).parent / "recipe.yaml")
    result = run(recipe, out=tmp_path / "run", offline=True)
    assert result.steps["faq"].rows > 0
