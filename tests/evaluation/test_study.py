"""recipes/faculty-sciences-es/eval.yaml, the study of docs/study.md: it lists the six candidates and
runs end to end offline (every profile through the embedded provider) on a small RUN_DIR."""

from __future__ import annotations

import json
from pathlib import Path

from synthgen.evaluation.evaluator import evaluate
from synthgen.evaluation.recipe import load_eval_recipe
from tests.tiny_model import make_run_dir

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "recipes" / "faculty-sciences-es" / "eval.yaml"


def test_study_eval_recipe_compares_training_with_retrieval_and_the_teacher(tmp_path: Path) -> None:
    ev = load_eval_recipe(STUDY)
    assert [(c.name, c.endpoint, c.retrieve.k if c.retrieve else None, c.facts) for c in ev.candidates] == [
        ("base", "base", None, False),
        ("sft", "sft", None, False),
        ("sft-dpo", "sft-dpo", None, False),
        ("rag", "base", 4, False),
        ("sft-dpo-rag", "sft-dpo", 4, False),
        ("teacher", "assistant", None, True),
    ]
    labeller = ev.generation.models["judge"].model
    assert ev.profiles()[ev.judge].model != labeller and "qwen" not in ev.profiles()[ev.judge].model.lower()
    assert ev.contamination is not None and not ev.contamination.drop

    ev.run_dir = make_run_dir(tmp_path, limit=2)  # the offline demo's: the same seeds, hence splits
    assert ev.sets.paraphrases is not None and ev.sets.out_of_scope is not None and ev.sets.real is not None
    ev.sets.paraphrases.max_seeds = ev.sets.heldout.max_questions = 2  # type: ignore[union-attr]
    ev.sets.out_of_scope.max_questions = ev.sets.real.max_questions = 1
    ev.modes.follow_ups, ev.bootstrap.samples = [], 50
    result = evaluate(ev, offline=True, out=tmp_path / "eval")
    assert result.summary["failures"]["answer_failures"] == 0
    answers = [json.loads(line) for line in (tmp_path / "eval" / "answers.jsonl").read_text().splitlines()]
    assert {a["candidate"] for a in answers} == {c.name for c in ev.candidates}
    assert (tmp_path / "eval" / "contamination.json").is_file()
