"""Acceptance: TRL's own stock scripts train on a synthgen RUN_DIR as is.

``trl/scripts/sft.py`` and ``trl/scripts/dpo.py`` (what ``trl sft`` / ``trl dpo`` launch) run unmodified
as subprocesses with ``dataset_name: RUN_DIR`` and ``dataset_config: sft|prefs``, on a tiny random Llama
saved next to an offline tokenizer. If one of them fails, the RUN_DIR format is wrong, not this test.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from tests.tiny_model import build_tiny_llama, make_run_dir, run_dir_texts

# DESIGN.md §3 plus `topic` and `generator` in prefs, which records.PreferenceRow carries (§3 omits them).
SFT_COLUMNS = {"messages", "prompt_id", "dialogue_id", "seed_ids", "topic", "persona", "generator", "model"}
PREFS_COLUMNS = {
    "prompt", "chosen", "rejected", "score_chosen", "score_rejected", "prompt_id", "seed_ids", "topic",
    "candidates", "judge_model", "generator",
}  # fmt: skip
MESSAGE = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-item offline-demo run with train and test rows; module-scoped, so it sets its own hermetic home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(tmp_path_factory.mktemp("run-home")))
        out = make_run_dir(tmp_path_factory.mktemp("run"), limit=6)
    for config in ("sft", "prefs"):
        for split in ("train", "test"):
            assert list((out / "data" / config).glob(f"{split}-*.parquet")), f"no {config}/{split} rows"
    return out


@pytest.fixture(scope="module")
def tiny_model(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", vocab=run_dir_texts(run_dir))


def _stock_script(name: str) -> Path:
    import trl

    return Path(trl.__file__).parent / "scripts" / f"{name}.py"


def _train(script: str, config: dict[str, Any], tmp_path: Path) -> tuple[list[dict[str, float]], str]:
    """Run a stock TRL script on ``config``; return its logged metrics (one dict per log line) and output."""
    cfg = tmp_path / f"{script}.yaml"
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_DISABLED": "true",
        "HF_HOME": str(tmp_path / "hf"),
    }
    proc = subprocess.run(
        [sys.executable, str(_stock_script(script)), "--config", str(cfg)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"trl/scripts/{script}.py exited {proc.returncode}:\n{output[-4000:]}"
    # disable_tqdm: transformers' PrinterCallback prints each log as a dict literal on its own line.
    logs = [ast.literal_eval(line) for line in proc.stdout.splitlines() if line.startswith("{'")]
    return [{k: float(v) for k, v in log.items()} for log in logs], output


def _config(model: Path, run_dir: Path, dataset_config: str, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "model_name_or_path": str(model),
        "dataset_name": str(run_dir),
        "dataset_config": dataset_config,
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "logging_steps": 1,
        "bf16": False,  # TRL defaults to bf16, which CPUs here do not train in
        "report_to": "none",
        "max_length": 256,
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_pin_memory": False,
        "seed": 0,
        **extra,
    }


def _losses(logs: list[dict[str, float]]) -> tuple[list[float], float]:
    train = [log["loss"] for log in logs if "loss" in log]
    evals = [log["eval_loss"] for log in logs if "eval_loss" in log]
    assert len(train) == 2, logs  # max_steps 2, logging_steps 1: both steps ran and logged
    assert len(evals) == 1, logs  # the test split was evaluated once
    assert all(math.isfinite(x) for x in [*train, *evals]), logs
    return train, evals[0]


def test_run_dir_loads_with_the_contract_columns(run_dir: Path, tmp_path: Path) -> None:
    sft = datasets.load_dataset(str(run_dir), "sft", cache_dir=str(tmp_path / "cache"))
    prefs = datasets.load_dataset(str(run_dir), "prefs", cache_dir=str(tmp_path / "cache"))
    assert set(sft) == set(prefs) == {"train", "test"}
    for split in ("train", "test"):
        assert set(sft[split].column_names) == SFT_COLUMNS
        assert "prompt" not in sft[split].column_names  # TRL would read it as prompt-completion data
        assert set(prefs[split].column_names) == PREFS_COLUMNS
        assert sft[split].features["messages"] == MESSAGE
        for column in ("prompt", "chosen", "rejected"):
            assert prefs[split].features[column] == MESSAGE
    for row in sft["train"]:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
    for row in prefs["train"]:
        assert row["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["score_chosen"] > row["score_rejected"]


@pytest.mark.parametrize("assistant_only_loss", [False, True], ids=["full-loss", "assistant-only"])
def test_stock_sft_script_trains_on_run_dir(
    run_dir: Path, tiny_model: Path, tmp_path: Path, assistant_only_loss: bool
) -> None:
    out = tmp_path / "sft-out"
    config = _config(tiny_model, run_dir, "sft", out, assistant_only_loss=assistant_only_loss)
    logs, output = _train("sft", config, tmp_path)
    train, _ = _losses(logs)
    # A random model predicts ~uniformly: the first loss is about ln(vocab) over real token labels.
    vocab = json.loads((tiny_model / "config.json").read_text())["vocab_size"]
    assert abs(train[0] - math.log(vocab)) < 1.0, (train, vocab)
    assert "may not learn to stop" not in output  # the end-of-turn token is inside the assistant mask
    assert (out / "model.safetensors").is_file()


def test_stock_dpo_script_trains_on_run_dir(run_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo-out"
    logs, output = _train("dpo", _config(tiny_model, run_dir, "prefs", out), tmp_path)
    train, _ = _losses(logs)
    # Policy == reference at step 1, so the sigmoid DPO loss is exactly ln 2: chosen and rejected were
    # paired and scored against the reference copy.
    assert abs(train[0] - math.log(2)) < 1e-3, train
    assert (
        "not a prefix" not in output
    )  # the prompt (ending in a user turn) renders as a prefix of prompt+chosen
    assert (out / "model.safetensors").is_file()


def test_tiny_llama_is_deterministic_and_masks_assistant_replies(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["¿Cuándo es la matrícula?", "Del 28 de julio al 12 de septiembre."]
    a = build_tiny_llama(tmp_path / "a", vocab=texts)
    b = build_tiny_llama(tmp_path / "b", vocab=texts)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    tokenizer = AutoTokenizer.from_pretrained(a)
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, None)
    messages = [
        {"role": "system", "content": "Eres el asistente."},
        {"role": "user", "content": texts[0]},
        {"role": "assistant", "content": texts[1]},
        {"role": "user", "content": "¿Y en febrero?"},
    ]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == texts[1] + "<|im_end|>"  # the reply and its stop token, nothing else
    assert tokenizer.decode(out["input_ids"]).count("<|im_start|>") == 4  # byte-level: decode round-trips
