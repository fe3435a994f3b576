"""The Zephyr recipe end to end on CPU: SFT (in-process) then DPO (``python -m trainer.dpo``) on a RUN_DIR.

A tiny random Llama with an offline tokenizer (tests/tiny_model.py) trains for a few steps on the rows of
``synthgen run recipes/offline-demo --offline``. What is asserted is what would silently go wrong in a real
run: the labels cover exactly the assistant replies and their end-of-turn token, the saved adapter is the
trained one, the merged model is the SFT model, and DPO moves the policy towards the chosen answers. Each
preflight failure has a template that triggers it.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from synthgen.errors import TrainerError
from tests.tiny_model import CHAT_TEMPLATE, build_tiny_llama, make_run_dir, run_dir_texts
from trainer import ModelArguments, load_tokenizer
from trainer import dpo as dpo_script
from trainer import sft as sft_script
from trainer.data import DataArguments, load_splits
from trainer.preflight import (
    check_model_path,
    check_pad_token,
    preflight_dpo,
    preflight_model,
    preflight_sft,
)

REPO = Path(__file__).resolve().parents[2]
EOT = "<|im_end|>"
# The shipped CPU demo configs drive the runs; only the paths are overridden on the command line.
DEMO_SFT = REPO / "recipes" / "offline-demo" / "sft.yaml"
DEMO_DPO = REPO / "recipes" / "offline-demo" / "dpo.yaml"
FACULTY = REPO / "recipes" / "faculty-sciences-es"


def _argv(config: Path, model: Path, run_dir: Path, out: Path) -> list[str]:
    paths = ["--model_name_or_path", str(model), "--dataset_name", str(run_dir), "--output_dir", str(out)]
    return ["--config", str(config), *paths, "--disable_tqdm", "true"]


def _steps(config: Path) -> int:
    return int(yaml.safe_load(config.read_text(encoding="utf-8"))["max_steps"])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module-scoped hermetic env: module fixtures run before conftest's per-test one."""
    root = tmp_path_factory.mktemp("trainer-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(root / "synthgen"))
        mp.setenv("HF_HOME", str(root / "hf"))
        yield root


@pytest.fixture(scope="module")
def run_dir(home: Path) -> Path:
    out = make_run_dir(home, limit=6)
    assert list((out / "data" / "prefs").glob("train-*.parquet"))
    return out


@pytest.fixture(scope="module")
def tiny(run_dir: Path, home: Path) -> Path:
    return build_tiny_llama(home / "tiny", vocab=run_dir_texts(run_dir))


@pytest.fixture(scope="module")
def rows(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The train rows as plain dicts, read straight from the parquet files."""

    def read(config: str) -> list[dict[str, Any]]:
        frame = pd.concat(pd.read_parquet(f) for f in sorted((run_dir / "data" / config).glob("train-*")))
        return [_plain(row) for row in frame.to_dict("records")]

    return {"sft": read("sft"), "prefs": read("prefs")}


def _plain(value: Any) -> Any:
    """numpy arrays of dicts (pandas' parquet lists) -> python lists of dicts."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def sft_run(run_dir: Path, tiny: Path, home: Path) -> tuple[Any, Path]:
    """SFT through the real entry point's parser and ``train``, in-process so the trainer can be inspected."""
    out = home / "sft"
    args = sft_script.make_parser().parse_args_and_config(args=_argv(DEMO_SFT, tiny, run_dir, out))
    return sft_script.train(*args), out


@pytest.fixture(scope="module")
def dpo_run(sft_run: tuple[Any, Path], run_dir: Path, home: Path) -> tuple[list[dict[str, float]], Path]:
    """DPO from the merged SFT model, through the CLI in a subprocess; returns its logged metrics."""
    _, sft_out = sft_run
    out = home / "dpo"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_DISABLED": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.dpo", *_argv(DEMO_DPO, sft_out / "merged", run_dir, out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # disable_tqdm: transformers' PrinterCallback prints each log as a dict literal on its own line.
    logs = [ast.literal_eval(line) for line in proc.stdout.splitlines() if line.startswith("{'")]
    return [{k: float(v) for k, v in log.items()} for log in logs], out


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, label in enumerate([*labels, -100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            spans.append((start, i))
            start = None
    return spans


# --- SFT ------------------------------------------------------------------------------------------------


def test_sft_labels_are_exactly_the_assistant_replies_and_their_end_of_turn(
    sft_run: tuple[Any, Path], rows: dict[str, list[dict[str, Any]]]
) -> None:
    trainer, _ = sft_run
    tokenizer = trainer.processing_class
    dataset = trainer.train_dataset
    assert len(dataset) == len(rows["sft"]) >= 2
    for example, row in zip(dataset, rows["sft"], strict=True):
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) < 1024  # nothing truncated
        labelled = [tokenizer.decode(ids[a:b]) for a, b in _runs(labels)]
        replies = [m["content"] + EOT for m in row["messages"] if m["role"] == "assistant"]
        assert labelled == replies  # no system/user token, no template scaffolding, every reply + its stop
        assert all(labels[i] in (-100, ids[i]) for i in range(len(ids)))

    batch = trainer.data_collator([dataset[0], dataset[1]])
    padding = batch["attention_mask"] == 0
    assert padding.any()  # the two rows differ in length
    assert (batch["labels"][padding] == -100).all()
    expected = sum(1 for ex in (dataset[0], dataset[1]) for label in ex["labels"] if label != -100)
    assert int((batch["labels"] != -100).sum()) == expected


def test_sft_losses_are_finite_and_the_adapter_reloads_with_identical_logits(
    sft_run: tuple[Any, Path], tiny: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer, out = sft_run
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    evals = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log]
    assert len(losses) == _steps(DEMO_SFT) and len(evals) == 1
    assert all(math.isfinite(x) for x in [*losses, *evals])
    assert losses[-1] < losses[0]

    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    memory = trainer.model.eval()
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    with torch.no_grad():
        trained = memory(**inputs).logits
        untouched = base(**inputs).logits
        reloaded = PeftModel.from_pretrained(base, out).eval()(**inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()(**inputs).logits
    assert not torch.allclose(trained, untouched, atol=1e-4)  # the adapter learned something
    assert torch.equal(reloaded, trained)  # the saved adapter is the trained one, bit for bit
    torch.testing.assert_close(merged, trained, atol=1e-5, rtol=1e-5)  # the merge is the SFT model

    saved = json.loads((out / "merged" / "config.json").read_text())
    assert saved["dtype"] == "float32"  # merged in full precision
    assert (out / "merged" / "tokenizer.json").is_file() and (
        out / "merged" / "chat_template.jinja"
    ).is_file()


# --- DPO ------------------------------------------------------------------------------------------------


def _margin(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> float:
    """Mean logp(chosen) - logp(rejected) given the prompt, by a forward pass of our own (not TRL's)."""

    def logp(prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> float:
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
        ids = tokenizer.apply_chat_template(prompt + completion)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        token_logps = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        return float(token_logps[len(prompt_ids) - 1 :].sum())

    return sum(logp(p["prompt"], p["chosen"]) - logp(p["prompt"], p["rejected"]) for p in pairs) / len(pairs)


def test_dpo_from_the_merged_sft_model_raises_the_chosen_margin(
    dpo_run: tuple[list[dict[str, float]], Path],
    sft_run: tuple[Any, Path],
    rows: dict[str, list[dict[str, Any]]],
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logs, out = dpo_run
    losses = [log["loss"] for log in logs if "loss" in log]
    evals = [log["eval_loss"] for log in logs if "eval_loss" in log]
    assert len(losses) == _steps(DEMO_DPO) and len(evals) == 1
    assert all(math.isfinite(x) for x in [*losses, *evals])
    # Step 1: the fresh adapter is zero, so policy == reference (the merged SFT model) and the loss is ln 2.
    assert abs(losses[0] - math.log(2)) < 1e-3, losses

    merged = sft_run[1] / "merged"
    tokenizer = AutoTokenizer.from_pretrained(merged)
    sft_model = AutoModelForCausalLM.from_pretrained(merged).eval()
    before = _margin(sft_model, tokenizer, rows["prefs"])
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(merged), out).eval()
    after = _margin(policy, tokenizer, rows["prefs"])
    assert after > before + 1.0, (before, after)


def test_dpo_refuses_the_sft_adapter_folder_and_points_at_the_merged_model(sft_run: tuple[Any, Path]) -> None:
    _, out = sft_run
    with pytest.raises(TrainerError, match="holds a LoRA adapter") as err:
        check_model_path(str(out))
    assert str(out / "merged") in str(err.value)


# --- preflight ------------------------------------------------------------------------------------------

ASSISTANT = "{%- if message['role'] == 'assistant' %}"
# The tiny model's ChatML template with one thing broken each.
NO_MARKERS = CHAT_TEMPLATE.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
EMPTY_MARKERS = CHAT_TEMPLATE.replace(
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}",
    "{%- generation %}{%- endgeneration %}{{- message['content'] + '<|im_end|>' }}",
)
EOT_OUTSIDE = CHAT_TEMPLATE.replace(
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}",
    "{%- generation %}{{- message['content'] }}{%- endgeneration %}{{- '<|im_end|>' }}",
)
NO_SYSTEM = (
    "{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}"
    + CHAT_TEMPLATE
)
DROPS_SYSTEM = CHAT_TEMPLATE.replace("{%- for message in messages %}", "{%- for message in messages[1:] %}")
OTHER_GENERATION_PROMPT = CHAT_TEMPLATE.replace(
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}",
    "{%- if add_generation_prompt %}{{- '<|im_start|>bot\\n' }}",
)


@pytest.fixture
def tokenizer(tiny: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def test_preflight_passes_the_tiny_models_template(
    tokenizer: Any, rows: dict[str, list[dict[str, Any]]]
) -> None:
    assert preflight_sft(tokenizer, rows["sft"][0]) is None  # its own template, markers included
    preflight_dpo(tokenizer, rows["prefs"][0])
    preflight_model(ModelArguments(model_name_or_path="tiny"))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (EMPTY_MARKERS, "marks no token of a row as assistant"),
        (NO_MARKERS, r"no \{% generation %\} markers"),
        (EOT_OUTSIDE, "leaves out the end-of-turn token '<\\|im_end\\|>'"),
        (NO_SYSTEM, "rejects a system turn"),
        (DROPS_SYSTEM, "drops the system turn"),
    ],
    ids=["empty-mask", "no-markers", "eos-outside-mask", "rejects-system", "drops-system"],
)
def test_sft_preflight_fails_with_the_fix(
    tokenizer: Any, rows: dict[str, list[dict[str, Any]]], template: str, message: str
) -> None:
    tokenizer.chat_template = template
    with pytest.raises(TrainerError, match=message) as err:
        preflight_sft(tokenizer, rows["sft"][0])
    assert err.value.hint  # every failure says what to change


def test_sft_preflight_renders_the_chat_template_path(
    tokenizer: Any, rows: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed.jinja"
    fixed.write_text(CHAT_TEMPLATE, encoding="utf-8")
    tokenizer.chat_template = EOT_OUTSIDE
    preflight_sft(tokenizer, rows["sft"][0], chat_template_path=str(fixed))  # the file wins, as in TRL
    tokenizer.chat_template = EOT_OUTSIDE
    preflight_sft(tokenizer, rows["sft"][0], assistant_only_loss=False)  # full loss: the mask is moot


def test_dpo_preflight_fails_when_the_prompt_is_not_a_prefix(
    tokenizer: Any, rows: dict[str, list[dict[str, Any]]]
) -> None:
    tokenizer.chat_template = OTHER_GENERATION_PROMPT
    with pytest.raises(TrainerError, match="not a prefix of prompt\\+chosen") as err:
        preflight_dpo(tokenizer, rows["prefs"][0])
    assert "bot" in str(err.value) and err.value.hint


def test_preflight_fails_without_a_pad_token_and_tokenizer_pad_token_fixes_it(
    tokenizer: Any, tiny: Path, tmp_path: Path, rows: dict[str, list[dict[str, Any]]]
) -> None:
    tokenizer.pad_token = None
    with pytest.raises(TrainerError, match="no pad token"):
        preflight_sft(tokenizer, rows["sft"][0])
    with pytest.raises(TrainerError, match="no pad token"):
        preflight_dpo(tokenizer, rows["prefs"][0])
    tokenizer.save_pretrained(tmp_path)
    shutil.copy(tiny / "config.json", tmp_path / "config.json")
    unpadded = load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path)))
    with pytest.raises(TrainerError, match="no pad token"):
        check_pad_token(unpadded)
    padded = load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path), tokenizer_pad_token="<|pad|>"))
    check_pad_token(padded)
    assert padded.pad_token_id != padded.eos_token_id
    with pytest.raises(TrainerError, match="not a token"):
        load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path), tokenizer_pad_token="<nope>"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA is allowed where a GPU is visible")
@pytest.mark.parametrize("flag", ["load_in_4bit", "load_in_8bit"])
def test_qlora_without_a_gpu_is_refused(flag: str) -> None:
    with pytest.raises(TrainerError, match="needs a CUDA GPU") as err:
        preflight_model(ModelArguments(model_name_or_path="tiny", **{flag: True}))
    assert err.value.field == flag and "remove" in (err.value.hint or "")


def test_cli_exits_2_with_the_fix_before_loading_the_model(
    tiny: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "gemma-like"
    shutil.copytree(tiny, model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM, encoding="utf-8")
    (model / "model.safetensors").unlink()  # proves the preflight stops before any weight is read
    assert sft_script.main(_argv(DEMO_SFT, model, run_dir, tmp_path)) == 2
    assert "rejects a system turn" in capsys.readouterr().err


def test_the_faculty_configs_parse_with_lora_bf16_and_the_assistant_mask() -> None:
    # bf16 is overridden only because this CPU cannot validate it; every other key must be known to TRL.
    sft_args, sft_train, sft_model = sft_script.make_parser().parse_args_and_config(
        args=["--config", str(FACULTY / "sft.yaml"), "--bf16", "false"]
    )
    dpo_args, dpo_train, dpo_model = dpo_script.make_parser().parse_args_and_config(
        args=["--config", str(FACULTY / "dpo.yaml"), "--bf16", "false"]
    )
    assert (sft_args.dataset_config, dpo_args.dataset_config) == ("sft", "prefs")
    assert sft_model.use_peft and dpo_model.use_peft and sft_model.lora_target_modules == "all-linear"
    assert sft_train.assistant_only_loss and sft_args.merge_adapter
    assert dpo_model.model_name_or_path == f"{sft_train.output_dir}/merged"
    assert dpo_train.learning_rate < sft_train.learning_rate and dpo_train.beta == 0.1


# --- data -----------------------------------------------------------------------------------------------


def test_lora_is_the_default_and_full_fine_tuning_is_one_flag(tiny: Path) -> None:
    _, _, model_args = dpo_script.make_parser().parse_args_and_config(
        args=["--model_name_or_path", str(tiny), "--output_dir", "x", "--bf16", "false"]
    )
    assert model_args.use_peft and model_args.lora_target_modules == "all-linear"
    _, training_args, model_args = sft_script.make_parser().parse_args_and_config(
        args=[
            "--model_name_or_path",
            str(tiny),
            "--output_dir",
            "x",
            "--bf16",
            "false",
            "--use_peft",
            "false",
        ]
    )
    assert not model_args.use_peft and training_args.assistant_only_loss


def test_a_local_run_dir_cannot_be_pinned_and_the_config_must_match(run_dir: Path) -> None:
    with pytest.raises(TrainerError, match="no revisions to pin"):
        load_splits(
            DataArguments(dataset_name=str(run_dir), dataset_revision="abc123"), kind="sft", evaluate=False
        )
    with pytest.raises(TrainerError, match="has no messages column"):
        load_splits(
            DataArguments(dataset_name=str(run_dir), dataset_config="prefs"), kind="sft", evaluate=False
        )
    with pytest.raises(TrainerError, match="no 'validation' split"):
        load_splits(
            DataArguments(dataset_name=str(run_dir), dataset_config="sft", dataset_test_split="validation"),
            kind="sft",
            evaluate=True,
        )


def test_a_regenerated_run_dir_is_read_afresh(run_dir: Path, tmp_path: Path) -> None:
    """datasets caches a local folder by its name and card, not its files: a changed row must be seen."""
    first, second = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(run_dir, first)
    shutil.copytree(run_dir, second)
    train = next((second / "data" / "sft").glob("train-*.parquet"))
    frame = pd.read_parquet(train)
    frame.at[0, "dialogue_id"] = "regenerated"  # same rows, same card, other content
    frame.to_parquet(train, index=False)
    args = {"dataset_config": "sft"}
    old, _ = load_splits(DataArguments(dataset_name=str(first), **args), kind="sft", evaluate=False)
    new, _ = load_splits(DataArguments(dataset_name=str(second), **args), kind="sft", evaluate=False)
    assert old[0]["dialogue_id"] != "regenerated" and new[0]["dialogue_id"] == "regenerated"


# --- GPU benchmark --------------------------------------------------------------------------------------


def test_gpu_benchmark_dry_run_checks_itself(tmp_path: Path) -> None:
    from benchmarks import train_gpu

    out = tmp_path / "train_gpu.json"
    assert train_gpu.main(["--dry-run", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert all(result["checks"].values()), result["checks"]
    assert result["tokens_per_s"] > 0 and result["timed_tokens"] > 0
    assert result["setup"]["timed_steps"] == 3 and result["peak_gpu_memory_gib"] is None
