"""The retrieval baseline: its index holds the train seeds and the regulation chunks, never a held-out
seed, and a ``retrieve`` candidate answers with the top-k passages in its system turn.

The candidate is an endpoint on the loopback OpenAI server, which records what the candidate was sent;
the judge is the same server's default (schema-valid) replies: only the retrieval side is asserted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthgen.errors import ConfigError, RecipeError
from synthgen.evaluation.evaluator import evaluate
from synthgen.evaluation.recipe import load_eval_recipe
from synthgen.evaluation.retrieval import analyze, build_retriever, document_passages, recipe_documents
from synthgen.generators.chunking import chunk, load_document
from synthgen.recipe import Recipe, load_recipe
from tests.servers.openai_server import OpenAIServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds" / "faculty-sciences-es"
KEY_ENV = "SYNTHGEN_TEST_RAG_KEY"


def splits_of(recipe_seeds: list[Any]) -> dict[str, str]:
    """Every fifth seed held out (the runner's splits are hashed; a fixed rule is easier to read)."""
    return {s.id: "test" if i % 5 == 0 else "train" for i, s in enumerate(recipe_seeds)}


def write_recipe(root: Path, url: str) -> Path:
    profile = {"base_url": url, "api_key_env": KEY_ENV, "temperature": 0.0}
    recipe = {
        "name": "rag",
        "language": "es",
        "seeds": str(SEEDS / "seeds.yaml"),
        "system_prompt": "Eres el asistente de la Facultad de Ciencias.",
        "models": {"assistant": {"model": "assistant-model", **profile}},
        "steps": [{"name": "dialogues", "generator": "dialogue", "config": {"student": "assistant"}}],
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return root / "recipe.yaml"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OpenAIServer, list[dict[str, Any]]]]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    sent: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> None:
        if body["model"] == "base-model":
            sent.append(body)
        return None  # the server's default reply: text, or a schema-valid verdict for the judge

    with OpenAIServer(ServerConfig(responder=record)) as srv:
        yield srv, sent


def test_index_holds_train_seeds_and_document_chunks_never_a_heldout_seed(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "http://127.0.0.1:9/v1"))
    splits = splits_of(recipe.loaded_seeds)
    test = {sid for sid, split in splits.items() if split == "test"}
    documents = sorted((SEEDS / "documents").glob("*.md"))
    assert sorted(recipe_documents(recipe)) == documents  # cited by the seeds' `source`
    retriever = build_retriever(recipe, splits)
    ids = [p.id for p in retriever.passages]
    chunks = sum(len(chunk(load_document(d))) for d in documents)  # as the documents generator cuts them
    assert retriever.describe() == {"seeds": 93 - len(test), "chunks": chunks, "tokenization": "stemmed"}
    assert ids[-chunks:] == [p.id for p in document_passages(recipe_documents(recipe))]
    everything = len(ids)
    for seed in recipe.loaded_seeds:
        if seed.id in test:  # even its own words, asked of the whole index, never bring it back
            for query in (seed.question, seed.answer):
                assert all(p.id != f"seed:{seed.id}" for p in retriever.search(query, everything))
        else:
            assert retriever.search(seed.question, 1)[0].id == f"seed:{seed.id}"
    # a seed the RUN_DIR's splits do not know (the recipe changed since the run) is not retrieved either
    unknown = recipe.loaded_seeds[1]
    partial = {k: v for k, v in splits.items() if k != unknown.id}
    assert f"seed:{unknown.id}" not in {p.id for p in build_retriever(recipe, partial).passages}


def test_tokenisation_folds_accents_drops_stop_words_and_stems() -> None:
    assert analyze("¿Cuándo es la MATRÍCULA?", "lower") == ["cuándo", "es", "la", "matrícula"]
    assert analyze("¿Cuándo es la MATRÍCULA?", "folded") == ["cuando", "es", "la", "matricula"]
    assert analyze("¿Cuándo es la MATRÍCULA?", "stopwords") == ["matricula"]
    assert analyze("matrícula matricularme Matriculas", "stemmed") == ["matricul"] * 3
    assert analyze("matrícula", "stemmed", language="xx") == ["matricula"]  # no stemmer: folded words


def write_rag_eval(root: Path, url: str, **sets: Any) -> tuple[Recipe, dict[str, str]]:
    """An eval recipe with one candidate, ``rag`` (base-model, top 3), on six held-out questions."""
    write_recipe(root, url)
    recipe = load_recipe(root / "recipe.yaml")
    splits = splits_of(recipe.loaded_seeds)
    (root / "run" / ".synthgen").mkdir(parents=True)
    (root / "run" / ".synthgen" / "splits.json").write_text(json.dumps(splits))
    profile = {"base_url": url, "api_key_env": KEY_ENV, "temperature": 0.0}
    eval_recipe = {
        "name": "rag-eval",
        "recipe": "recipe.yaml",
        "run_dir": "run",
        "judge": "judge",
        "models": {"judge": {"model": "judge-model", **profile}, "base": {"model": "base-model", **profile}},
        "candidates": [{"name": "rag", "endpoint": "base", "retrieve": {"k": 3}}],
        "sets": {"heldout": {"max_questions": 6}, **sets},
        "modes": {"claims": False, "pairwise": False, "follow_ups": ["¿Y el plazo?"]},
        "bootstrap": {"samples": 50},
    }
    (root / "eval.yaml").write_text(yaml.safe_dump(eval_recipe, allow_unicode=True), encoding="utf-8")
    return recipe, splits


def test_rag_candidate_answers_with_train_passages_in_its_system_turn(
    server: tuple[OpenAIServer, list[dict[str, Any]]], tmp_path: Path
) -> None:
    srv, sent = server
    recipe, splits = write_rag_eval(tmp_path, srv.url)
    summary = evaluate(tmp_path / "eval.yaml", out=tmp_path / "out", use_cache=False).summary

    by_question = {s.question: s.id for s in recipe.loaded_seeds}
    assert len(sent) == 12  # 6 held-out questions and their follow-ups
    shown_docs = 0
    for body in sent:
        system, *turns = body["messages"]
        assert system["role"] == "system" and system["content"].startswith("Eres el asistente")
        facts = re.findall(r'<fact (question|source)="([^"]*)">', system["content"])
        assert 1 <= len(facts) <= 3
        for kind, title in facts:
            if kind == "question":  # a seed: always one of the train split
                assert splits[by_question[title.replace("'", '"')]] == "train", title
            shown_docs += kind == "source"
        assert turns[-1]["role"] == "user"
    assert shown_docs > 0  # regulation articles compete with the seeds for the k places
    described = summary["candidates"][0]
    assert described["retrieve"] == {
        "k": 3,
        "seeds": sum(v == "train" for v in splits.values()),
        "chunks": len(document_passages(recipe_documents(recipe))),
        "tokenization": "stemmed",
    }


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ({"name": "x", "answers": "a.jsonl", "retrieve": {"k": 4}}, "only an endpoint or local candidate"),
        ({"name": "x", "endpoint": "assistant", "facts": True, "retrieve": {}}, "facts already shows"),
        ({"name": "x", "endpoint": "assistant", "retrieve": {"k": 0}}, "greater than or equal to 1"),
        ({"name": "x", "endpoint": "assistant", "retrieve": {"k": 4, "top": 2}}, "top"),
        ({"name": "x", "endpoint": "assistant", "retrieve": {"documents": ["nope.md"]}}, "file not found"),
    ],
)
def test_retrieve_block_is_validated(tmp_path: Path, candidate: dict[str, Any], message: str) -> None:
    write_recipe(tmp_path, "http://127.0.0.1:9/v1")
    (tmp_path / "a.jsonl").write_text("")
    data = {"name": "e", "recipe": "recipe.yaml", "run_dir": "run", "candidates": [candidate]}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(RecipeError, match=message) as info:
        load_eval_recipe(tmp_path / "eval.yaml")
    assert "candidates" in str(info.value)


def test_documents_of_a_documents_step_are_indexed_too(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    regulation = tmp_path / "docs" / "normativa.md"
    regulation.write_text((SEEDS / "documents" / "normativa-practicas.md").read_text(encoding="utf-8"))
    seed = {"id": "s1", "topic": "t", "question": "¿Cuándo es la matrícula?", "answer": "En julio."}
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump({"seeds": [seed]}, allow_unicode=True))
    recipe = {
        "name": "docs",
        "seeds": "seeds.yaml",
        "system_prompt": "Eres el asistente.",
        "models": {"assistant": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
        "steps": [{"name": "extract", "generator": "documents", "config": {"documents": "docs/*.md"}}],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    loaded = load_recipe(tmp_path / "recipe.yaml")
    assert recipe_documents(loaded) == [regulation.resolve()]
    retriever = build_retriever(loaded, {"s1": "train"})
    assert retriever.describe()["chunks"] == len(chunk(load_document(regulation))) > 1
    assert retriever.search("seguro de accidentes en las prácticas", 1)[0].id.startswith("doc:normativa.md#")


def test_without_the_eval_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthgen.evaluation.retrieval import Passage, Retriever

    monkeypatch.setitem(__import__("sys").modules, "bm25s", None)  # as if the eval extra were missing
    with pytest.raises(ConfigError, match=r"synthgen\[eval\]"):
        Retriever([Passage("seed:a", "q", "a")])


def test_a_missing_eval_extra_fails_before_any_question_is_paid_for(
    server: tuple[OpenAIServer, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, sent = server
    write_rag_eval(tmp_path, srv.url, paraphrases={"profile": "base", "max_seeds": 2})
    monkeypatch.setitem(__import__("sys").modules, "bm25s", None)
    with pytest.raises(ConfigError, match=r"synthgen\[eval\]"):
        evaluate(tmp_path / "eval.yaml", out=tmp_path / "out", use_cache=False)
    assert sent == [] and srv.stats()["requests"] == 0  # the paraphrases were not written either
