"""The whole loop offline, on CPU: seeds -> synthgen run --offline -> SFT -> DPO -> synthgen evaluate,
with the retrieval baseline (the teacher's endpoint with top-k passages, no gold facts) and the trained
model with retrieval among the candidates, as docs/study.md runs it.

Everything is tiny (six work items, a random two-layer Llama, two training steps each, a handful of
questions, a few new tokens per answer): what is checked is that the pieces fit, i.e. the trainer's
output folder is a candidate evaluate loads (a PEFT adapter on the merged SFT model, through the chat
template and the recipe's system prompt) and the summary files come out with every judge call
accounted for. The offline judge's verdicts are placeholders, so no quality is asserted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("trl")

from synthgen.cli import main
from tests.tiny_model import build_tiny_llama, make_run_dir, run_dir_texts

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "recipes" / "offline-demo"


def _train(kind: str, model: Path, run_dir: Path, out: Path) -> Path:
    """``python -m trainer.<kind> --config recipes/offline-demo/<kind>.yaml`` in-process, two steps."""
    from trainer import dpo, sft

    script = sft if kind == "sft" else dpo
    argv = [
        *("--config", str(DEMO / f"{kind}.yaml")),
        *("--model_name_or_path", str(model), "--dataset_name", str(run_dir), "--output_dir", str(out)),
        *("--max_steps", "2", "--eval_strategy", "no", "--disable_tqdm", "true"),
    ]
    assert script.main(argv) == 0
    return out


def test_seeds_to_run_to_sft_to_dpo_to_evaluate(tmp_path: Path) -> None:
    os.environ.setdefault("WANDB_DISABLED", "true")
    started = time.monotonic()
    run_dir = make_run_dir(tmp_path, limit=6)
    tiny = build_tiny_llama(tmp_path / "tiny", vocab=run_dir_texts(run_dir))
    sft_out = _train("sft", tiny, run_dir, tmp_path / "sft")
    dpo_out = _train("dpo", sft_out / "merged", run_dir, tmp_path / "dpo")
    assert (dpo_out / "adapter_config.json").is_file()

    (tmp_path / "real.txt").write_text("¿Cuándo es la matrícula?\n¿Dónde pido el título?\n", encoding="utf-8")
    eval_recipe = {
        "name": "loop",
        "recipe": str(DEMO / "recipe.yaml"),
        "run_dir": str(run_dir),
        "seed": 3,
        "candidates": [
            {"name": "dpo", "model": str(dpo_out), "max_new_tokens": 8},
            {"name": "teacher", "endpoint": "assistant", "facts": True},
            {"name": "rag", "endpoint": "assistant", "retrieve": {"k": 2}},
            {"name": "dpo_rag", "model": str(dpo_out), "max_new_tokens": 8, "retrieve": {"k": 2}},
        ],
        "sets": {
            "paraphrases": {"profile": "student", "max_seeds": 2, "on_overlap": "flag"},
            "heldout": {"max_questions": 2},
            "out_of_scope": {"path": str(DEMO / "out_of_scope.txt"), "max_questions": 2},
            "real": {"path": str(tmp_path / "real.txt")},
        },
        "modes": {"follow_ups": ["¿Y el plazo?"]},
        "bootstrap": {"samples": 200},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(eval_recipe, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["evaluate", str(path), "--offline", "--out", str(out)])
    assert result.exit_code == 0, result.output

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {n: s["questions"] for n, s in summary["sets"].items()} == {
        "paraphrases": 2,
        "heldout": 2,
        "out_of_scope": 2,
        "real": 2,
    }
    assert summary["candidates"][0] == {
        "name": "dpo",
        "kind": "LocalSource",
        "path": str(dpo_out),
        "max_new_tokens": 8,
    }
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    for name in ("dpo", "dpo_rag", "rag"):
        mine = [a for a in answers if a["candidate"] == name]
        assert len(mine) == 8 + 4 and all(a["failure"] is None for a in mine)  # 8 questions + 4 follow-ups
    train = sum(
        v == "train" for v in json.loads((run_dir / ".synthgen" / "splits.json").read_text()).values()
    )
    retrieving = {c["name"]: c["retrieve"] for c in summary["candidates"] if "retrieve" in c}
    assert set(retrieving) == {"rag", "dpo_rag"} and retrieving["rag"]["k"] == 2
    assert retrieving["rag"]["seeds"] == train and retrieving["rag"]["chunks"] > 0  # the seeds' documents
    assert json.loads((out / "contamination.json").read_text())["sets"]["heldout"]["checked"] == 2
    judgments = (out / "judgments.jsonl").read_text().splitlines()
    # per candidate: 4 seed questions x (single, claims, recall, multi-turn) + 2 abstention + 2 coverage;
    # per question and pair of the 4 candidates (6 pairs): 2 pairwise orders
    assert len(judgments) == summary["failures"]["calls"] == 4 * (4 * 4 + 2 + 2) + 8 * 6 * 2
    rows = {(r["candidate"], r["set"]) for r in summary["rows"] if r["topic"] == "all"}
    assert ("dpo", "heldout") in rows and ("dpo", "out_of_scope") in rows
    assert "### dpo" in (out / "summary.md").read_text(encoding="utf-8")
    assert time.monotonic() - started < 120
