"""Planning stays linear in the seeds: items carry no per-topic lists, and related seeds are drawn at
generate time from the context's topic index with the same random draws as before (datasets and
cache keys depend on them).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from synthgen.generators.base import Generator, GeneratorContext, WorkItem
from synthgen.generators.dialogue import DialogueGenerator
from synthgen.generators.preference import PreferenceGenerator
from synthgen.llm.client import ChatClient
from synthgen.pipeline.plan import StepPlan, assign_splits, walk
from synthgen.prompts import PromptLibrary
from synthgen.recipe import load_recipe
from synthgen.seeds import Seed

ROOT = Path(__file__).resolve().parents[2]


def topic_seeds(n: int, topic: str = "matricula") -> list[Seed]:
    """``n`` seeds of one topic with ids of one width, so only the count differs between sizes."""
    return [
        Seed(id=f"{topic}-{i:05d}", topic=topic, question=f"¿Pregunta {i}?", answer=f"Respuesta {i}.")
        for i in range(n)
    ]


def splits_of(seeds: list[Seed]) -> dict[str, str]:
    return assign_splits(seeds, 0.1, 13)


def context(seeds: list[Seed], splits: dict[str, str] | None = None) -> GeneratorContext:
    return GeneratorContext(
        client=None,  # type: ignore[arg-type]  # planning and related draws never call the client
        profiles={},
        seeds={s.id: s for s in seeds},
        personas=[],
        prompts=PromptLibrary("es"),
        language="es",
        system_prompt="",
        grounding="closed_book",
        recipe_seed=13,
        step="s",
        splits=splits or {},
    )


def payload_sizes(generator: Generator, seeds: list[Seed], upstream: Sequence[Mapping[str, Any]]) -> set[int]:
    items = generator.plan(seeds, splits_of(seeds), 13, "step", upstream)
    return {len(pickle.dumps(dict(item.payload))) for item in items}


def upstream_rows(seeds: list[Seed]) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": "¿Hola?"}, {"role": "assistant", "content": "Hola."}]
    return [
        {"dialogue_id": f"d{i:05d}", "seed_ids": [s.id], "topic": s.topic, "messages": messages, "model": "m"}
        for i, s in enumerate(seeds)
    ]


@pytest.mark.parametrize(
    ("generator", "with_upstream"),
    [
        (DialogueGenerator(DialogueGenerator.Config(per_seed=3)), False),
        (PreferenceGenerator(PreferenceGenerator.Config()), False),
        (PreferenceGenerator(PreferenceGenerator.Config()), True),
    ],
    ids=["dialogue", "preference-from-seeds", "preference-from-dialogues"],
)
def test_an_items_payload_does_not_grow_with_its_topic(generator: Generator, with_upstream: bool) -> None:
    small, large = topic_seeds(10), topic_seeds(1000)
    sizes = {
        n: payload_sizes(generator, seeds, upstream_rows(seeds) if with_upstream else [])
        for n, seeds in ((10, small), (1000, large))
    }
    # a pickle holds everything the payload reaches: a list of the topic's other seeds would be ~100x
    assert sizes[10] == sizes[1000] and max(sizes[1000]) < 400


@pytest.mark.parametrize("size", [2, 5, 22, 60, 300])
@pytest.mark.parametrize("k", [0, 1, 3, 6, 7, 40])
def test_related_draws_what_sampling_the_sorted_others_drew(size: int, k: int) -> None:
    """The draw before this change was ``rng.sample(sorted(other ids of topic and split), k)``; the
    index must pick the same seeds and leave ``rng`` in the same state (later draws depend on it),
    in both of ``random.sample``'s strategies (a copied pool for small ones, a set of picks else)."""
    seeds = topic_seeds(size) + topic_seeds(size // 2 + 1, "becas")
    random.Random(5).shuffle(seeds)  # the index must not depend on the seeds' order
    splits = splits_of(seeds)
    ctx = context(seeds, splits)
    for seed in seeds:
        group = sorted(s.id for s in seeds if s.topic == seed.topic and splits[s.id] == splits[seed.id])
        pool = [i for i in group if i != seed.id]
        old, new = random.Random(seed.id), random.Random(seed.id)
        expected = old.sample(pool, min(k, len(pool)))
        assert [s.id for s in ctx.related(seed, k, new)] == expected
        assert old.random() == new.random()


def test_without_splits_the_whole_topic_is_one_pool_and_by_topic_filters_by_split() -> None:
    seeds = topic_seeds(30) + topic_seeds(4, "becas")
    splits = splits_of(seeds)
    whole = context(seeds)
    related = whole.related(seeds[0], 40, random.Random(1))
    assert sorted(s.id for s in related) == [s.id for s in seeds[1:30]]  # both splits, never itself
    ctx = context(seeds, splits)
    assert ctx.by_topic("matricula") == seeds[:30] and ctx.by_topic("nada") == []
    test = ctx.by_topic("matricula", "test")
    assert test == [s for s in seeds[:30] if splits[s.id] == "test"] and len(test) == 3
    ctx.by_topic("matricula").clear()  # a caller's list is its own: the index is untouched
    assert len(ctx.by_topic("matricula")) == 30


async def test_the_pipelines_context_keeps_related_facts_in_the_items_split(tmp_path: Path) -> None:
    """``walk`` hands each step's context the run's splits: a test seed's dialogue draws its facts
    from test seeds only, a train seed's from train seeds only (the offline demo, half in test)."""
    demo = (ROOT / "recipes" / "offline-demo" / "recipe.yaml").read_text(encoding="utf-8")
    demo = demo.replace("../../seeds/", f"{ROOT / 'seeds'}/").replace(
        "test_fraction: 0.1", "test_fraction: 0.5"
    )
    (tmp_path / "recipe.yaml").write_text(demo, encoding="utf-8")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    seen: dict[str, set[str]] = {"train": set(), "test": set()}
    async with ChatClient(offline=True) as client:

        async def produce(plan: StepPlan) -> list[dict[str, Any]]:
            if plan.generator.name != "dialogue":
                return []
            ctx = plan.context(client, recipe.models, recipe.prompt_library())
            assert ctx.splits == splits
            test = [i for i in plan.items if i.split == "test"][:4]
            train = [i for i in plan.items if i.split == "train"][:4]
            for item in [*test, *train]:
                for row in await plan.generator.generate(item, ctx):
                    seen[item.split] |= {splits[i] for i in row["seed_ids"][1:]}
            return []

        await walk(recipe, splits, produce)
    assert seen == {"train": {"train"}, "test": {"test"}}


def test_planned_items_keep_their_ids_and_rng_seeds() -> None:
    """Resuming an old RUN_DIR matches journaled items by id; their randomness by rng_seed."""
    seeds = topic_seeds(4)
    splits = splits_of(seeds)
    items = DialogueGenerator(DialogueGenerator.Config(per_seed=2)).plan(seeds, splits, 13, "dialogues")
    assert items[1] == WorkItem(
        "matricula-00000/1",
        ("matricula-00000",),
        splits["matricula-00000"],
        8400597286132382034,
        {"variant": 1},
    )
    prefs = PreferenceGenerator(PreferenceGenerator.Config()).plan(seeds, splits, 13, "prefs")
    assert [(i.id, i.payload) for i in prefs[:2]] == [("matricula-00000", {}), ("matricula-00001", {})]
