"""The contamination check: a training row that copies a held-out answer gets its question flagged
(or dropped), with overlaps equal to hand-counted n-gram shares; test-split rows are not training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from synthgen.errors import RecipeError
from synthgen.evaluation.contamination import check_contamination, training_texts
from synthgen.evaluation.evaluator import evaluate
from synthgen.evaluation.questions import Question, Sets
from synthgen.evaluation.recipe import Contamination, load_eval_recipe

SEEDS = {
    "m1": ("matricula", "¿Cuándo es la automatrícula?", "Del 28 de julio al 12 de septiembre en la sede."),
    "m2": (
        "matricula",
        "¿Cuántos créditos mínimos en segundo?",
        "A partir del segundo año hay que matricularse de un mínimo de 48 ECTS y un máximo de 78 ECTS.",
    ),
    "b1": ("becas", "¿Cuándo se pide la beca?", "En la sede del ministerio hasta el 15 de mayo."),
    "b2": (
        "becas",
        "¿Puedo fraccionar el pago de la matrícula?",
        "Sí, puedes pagar la matrícula en ocho plazos mensuales domiciliados desde octubre hasta mayo.",
    ),
}
SPLITS = {"m1": "train", "b1": "train", "m2": "test", "b2": "test"}
PLANTED = (
    "Te cuento: a partir del segundo año hay que matricularse de un mínimo de 48 ECTS y un máximo de 78 ECTS."
)


def dialogue(user: str, assistant: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Eres el asistente."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]


def write_run(root: Path) -> Path:
    seeds = [{"id": k, "topic": t, "question": q, "answer": a} for k, (t, q, a) in SEEDS.items()]
    (root / "seeds.yaml").write_text(yaml.safe_dump({"seeds": seeds}, allow_unicode=True), encoding="utf-8")
    recipe = {
        "name": "tiny",
        "seeds": "seeds.yaml",
        "system_prompt": "Eres el asistente.",
        "models": {"assistant": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
        "steps": [{"name": "d", "generator": "dialogue", "config": {"student": "assistant"}}],
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run = root / "run"
    (run / ".synthgen").mkdir(parents=True)
    (run / ".synthgen" / "splits.json").write_text(json.dumps(SPLITS))
    for config in ("sft", "prefs"):
        (run / "data" / config).mkdir(parents=True)
    train = [dialogue("¿Cuándo es la automatrícula?", SEEDS["m1"][2]), dialogue("Otra duda", PLANTED)]
    pd.DataFrame([{"messages": m} for m in train]).to_parquet(run / "data/sft/train-00000-of-00001.parquet")
    # the test split holds b2's own dialogue, answer and all: not training, so b2 is not contaminated
    test = [dialogue(SEEDS["b2"][1], SEEDS["b2"][2])]
    pd.DataFrame([{"messages": m} for m in test]).to_parquet(run / "data/sft/test-00000-of-00001.parquet")
    pair = {
        "prompt": dialogue("¿Y la beca?", "")[:2],
        "chosen": [{"role": "assistant", "content": SEEDS["b1"][2]}],
        "rejected": [{"role": "assistant", "content": "No lo sé, pregunta en Secretaría."}],
    }
    pd.DataFrame([pair]).to_parquet(run / "data/prefs/train-00000-of-00001.parquet")
    return run


def write_eval(root: Path, **contamination: Any) -> Path:
    write_run(root)
    (root / "oos.txt").write_text(
        "¿Quién ganó el partido de ayer por la tarde en la tele?\n", encoding="utf-8"
    )
    data: dict[str, Any] = {
        "name": "contaminated",
        "recipe": "recipe.yaml",
        "run_dir": "run",
        "judge": "assistant",
        "candidates": [{"name": "none", "answers": "none.jsonl"}],  # no answers: no judge call
        "sets": {"heldout": {}, "out_of_scope": {"path": "oos.txt"}},
        "contamination": contamination or {},
    }
    (root / "none.jsonl").write_text("")
    (root / "eval.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return root / "eval.yaml"


def test_training_texts_are_every_train_turn_of_sft_and_prefs(tmp_path: Path) -> None:
    texts = training_texts(write_run(tmp_path))
    assert PLANTED in texts and SEEDS["m1"][2] in texts and "Eres el asistente." in texts  # all sft turns
    assert SEEDS["b1"][2] in texts and "No lo sé, pregunta en Secretaría." in texts  # chosen, rejected
    assert "¿Y la beca?" in texts  # the prompt
    assert SEEDS["b2"][2] not in texts  # the test split is not training


def test_a_training_row_copying_a_heldout_answer_is_flagged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = evaluate(write_eval(tmp_path), out=out, use_cache=False).summary
    record = json.loads((out / "contamination.json").read_text(encoding="utf-8"))
    assert record == {
        "n": 8,
        "threshold": 0.5,
        "drop": False,
        "sets": {
            "heldout": {"checked": 2, "flagged": ["heldout:m2"]},
            "out_of_scope": {"checked": 1, "flagged": []},
        },
        # m2's reference (19 words, 12 8-grams) is inside the planted turn: all found; b2: none
        "overlap": {"heldout:m2": 1.0, "heldout:b2": 0.0, "out_of_scope:1": 0.0},
    }
    assert summary["sets"]["heldout"] | {"note": ""} == {
        "questions": 2,
        "clusters": 2,
        "flagged": 1,
        "dropped": 0,
        "note": "",
    }
    questions = {q["id"]: q for q in map(json.loads, (out / "questions.jsonl").read_text().splitlines())}
    assert questions["heldout:m2"]["flags"] == ["contaminated: 100% of its 8-grams are in the training rows"]


def test_drop_leaves_flagged_questions_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = evaluate(write_eval(tmp_path, drop=True), out=out, use_cache=False).summary
    assert (summary["sets"]["heldout"]["questions"], summary["sets"]["heldout"]["dropped"]) == (1, 1)
    assert summary["sets"]["heldout"]["flagged"] == 0
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    dropped = [q for q in questions if "dropped" in q]
    assert [q["id"] for q in dropped] == ["heldout:m2"] and dropped[0]["dropped"].startswith("contaminated")
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert {a["question_id"] for a in answers} == {"heldout:b2", "out_of_scope:1"}  # m2 is never asked


def test_overlap_is_the_share_of_ngrams_found_and_the_larger_of_question_and_reference() -> None:
    words = [
        "uno",
        "dos",
        "tres",
        "cuatro",
        "cinco",
        "seis",
        "siete",
        "ocho",
        "nueve",
        "diez",
    ]  # 10 words: 3 8-grams
    sets = Sets(
        questions=[
            Question("heldout:a", "heldout", "¿Pregunta corta?", "a", "t", reference=" ".join(words)),
            Question("heldout:b", "heldout", " ".join(words[1:]), "b", "t"),  # 9 words: 2 8-grams
            Question("real:1", "real", "Cuatro cinco", "real:1", "t"),  # shorter than n: found as a whole
            Question("paraphrases:x:0", "paraphrases", " ".join(words), "x", "t", reference=" ".join(words)),
        ],
        stats={s: {"questions": 1, "clusters": 1, "flagged": 0, "dropped": 0} for s in ("heldout", "real")},
    )
    training = ["UNO dos tres cuatro cinco seis siete ocho nueve", "cuatro cinco"]  # case and accents fold
    _, record = check_contamination(sets, Path("unused"), Contamination(threshold=0.6), texts=training)
    assert record["overlap"] == {"heldout:a": round(2 / 3, 4), "heldout:b": 0.5, "real:1": 1.0}
    assert record["sets"] == {
        "heldout": {"checked": 2, "flagged": ["heldout:a"]},  # 0.67 >= 0.6; 0.5 is not
        "real": {"checked": 1, "flagged": ["real:1"]},
    }  # paraphrases are not checked by default: their reference is trained by construction


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"n": 1}, r"contamination\.n: .*greater than or equal to 2"),
        ({"threshold": 0}, r"contamination\.threshold: .*greater than 0"),
        ({"sets": ["x"]}, r"contamination\.sets\[0\]: Input should be 'paraphrases'"),
    ],
)
def test_contamination_block_is_validated(tmp_path: Path, block: dict[str, Any], message: str) -> None:
    path = write_eval(tmp_path, **block)
    with pytest.raises(RecipeError, match=message):
        load_eval_recipe(path)
