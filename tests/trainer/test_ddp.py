"""The multi-GPU launch of trainer/README.md, actually run: ``accelerate launch`` with 2 processes on CPU.

What a real multi-GPU run gets wrong silently is what is asserted: that the ranks really form one process
group (on a machine where the Accelerator does not see the device it expects, each process trains alone,
merges alone and writes the same files), that both ranks end with the same adapter (DDP all-reduces the
gradients, so the weights after the last step are equal bit for bit) and that it is the one saved, that
the merge ran once, and that dividing ``gradient_accumulation_steps`` by the process count keeps the rows
per optimizer step the faculty recipe's configs promise (16: 4 x 4 dialogues for SFT, 2 x 8 pairs for DPO).

The launch is trainer/README.md's, with TRL's own ``multi_gpu.yaml`` (DDP). ``accelerate launch --cpu``
would start a single process unless an MPI launcher is installed; the DDP config starts the ranks with
torchrun, and ``use_cpu: true`` makes each rank's Accelerator join the gloo group on CPU (without it, a
GPU-less rank falls back to training alone: the test below would say world size 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import trl
import yaml

from tests.tiny_model import build_tiny_llama, make_run_dir, run_dir_texts

pytestmark = pytest.mark.slow  # two launches of two processes each: ~2 min on 2 busy cores

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
DEMO = REPO / "recipes" / "offline-demo"
FACULTY = REPO / "recipes" / "faculty-sciences-es"
PROCESSES = 2
STEPS = 2
TRL_CONFIGS = Path(trl.__file__).parent / "accelerate_configs"  # TRL's DDP and DeepSpeed configs


def _promise(kind: str) -> tuple[int, int]:
    """(per-device batch, accumulation on 1 GPU) of the faculty recipe: the rows per step README promises."""
    config = yaml.safe_load((FACULTY / f"{kind}.yaml").read_text(encoding="utf-8"))
    return int(config["per_device_train_batch_size"]), int(config["gradient_accumulation_steps"])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("ddp-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(root / "synthgen"))
        mp.setenv("HF_HOME", str(root / "hf"))
        yield root


@pytest.fixture(scope="module")
def run_dir(home: Path) -> Path:
    """The offline demo's RUN_DIR with its train rows repeated to exactly ``STEPS`` optimizer steps of the
    promised size (the demo's few rows would end an epoch mid-accumulation and blur the count)."""
    source = make_run_dir(home, limit=6)
    out = home / "run-ddp"
    shutil.copytree(source, out)
    for config, kind in (("sft", "sft"), ("prefs", "dpo")):
        per_device, accumulation = _promise(kind)
        want = STEPS * per_device * accumulation
        files = sorted((out / "data" / config).glob("train-*.parquet"))
        frame = pd.concat(pd.read_parquet(f) for f in files)
        for f in files:
            f.unlink()
        pd.concat([frame] * (want // len(frame) + 1)).iloc[:want].to_parquet(files[0], index=False)
    # the card records each split's size, which datasets verifies: drop it for the repeated rows
    card = out / "README.md"
    _, header, body = card.read_text(encoding="utf-8").split("---\n", 2)
    meta = yaml.safe_load(header)
    meta.pop("dataset_info", None)
    card.write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def tiny(run_dir: Path, home: Path) -> Path:
    return build_tiny_llama(home / "tiny", vocab=run_dir_texts(run_dir))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(kind: str, model: Path, run_dir: Path, out: Path) -> list[dict[str, Any]]:
    """``accelerate launch --config_file multi_gpu.yaml --num_processes 2`` of one script on CPU (TRL's DDP
    config: torchrun starts the ranks; ``use_cpu`` puts them in a gloo group); returns each rank's report."""
    per_device, accumulation = _promise(kind)
    assert accumulation % PROCESSES == 0, f"{kind}.yaml's accumulation does not divide by {PROCESSES}"
    report = out.with_name(out.name + "-ranks")
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(TRL_CONFIGS / "multi_gpu.yaml"),  # trainer/README.md's command, as shipped
        "--num_processes", str(PROCESSES), "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
        str(WORKER), kind, str(report),
        "--config", str(DEMO / f"{kind}.yaml"),
        "--model_name_or_path", str(model), "--dataset_name", str(run_dir), "--output_dir", str(out),
        "--use_cpu", "true", "--max_steps", str(STEPS), "--eval_strategy", "no", "--disable_tqdm", "true",
        "--per_device_train_batch_size", str(per_device),
        "--gradient_accumulation_steps", str(accumulation // PROCESSES),
        "--dataloader_drop_last", "true",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_DISABLED": "true"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    said = f"{per_device * accumulation} rows per optimizer step = {per_device} per device x "
    assert proc.stdout.count(said) == 1, proc.stdout[-2000:]  # the trainer says it, on the main process
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(report.glob("rank*.json"))]
    assert [r["rank"] for r in reports] == list(range(PROCESSES)), proc.stderr[-4000:]
    return reports


def _saved_adapter_sha256(out: Path) -> str:
    """The worker's digest, over the adapter file the main process saved."""
    from safetensors.torch import load_file

    state = load_file(out / "adapter_model.safetensors")
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_ranks(kind: str, reports: list[dict[str, Any]], out: Path) -> None:
    per_device, accumulation = _promise(kind)
    for r in reports:
        assert (r["world_size"], r["backend"]) == (PROCESSES, "gloo"), r  # one group, not 2 lone runs
        assert r["global_step"] == STEPS
        # every optimizer step took exactly accumulation/N micro-batches of per_device rows on each rank
        assert r["micro_batches"] == STEPS * accumulation // PROCESSES
        assert r["rows"] == r["micro_batches"] * per_device
        assert r["lora_b_norm"] > 0  # LoRA's B starts at zero: the adapter trained
    rows_per_step = sum(r["rows"] for r in reports) / STEPS
    assert rows_per_step == per_device * accumulation == 16  # what trainer/README.md promises
    assert len({r["adapter_sha256"] for r in reports}) == 1  # both ranks hold the same weights
    assert _saved_adapter_sha256(out) == reports[0]["adapter_sha256"]  # and it is the adapter saved


@pytest.fixture(scope="module")
def sft(tiny: Path, run_dir: Path, home: Path) -> tuple[list[dict[str, Any]], Path]:
    out = home / "sft"
    return _launch("sft", tiny, run_dir, out), out


def test_sft_on_two_processes_trains_one_adapter_and_merges_once(
    sft: tuple[list[dict[str, Any]], Path],
) -> None:
    reports, out = sft
    _check_ranks("sft", reports, out)
    assert [r["merges"] for r in reports] == [1, 0]  # the main process merged, the other did not
    assert (out / "merged" / "config.json").is_file()


def test_dpo_on_two_processes_from_the_merged_model(
    sft: tuple[list[dict[str, Any]], Path], run_dir: Path, home: Path
) -> None:
    _, sft_out = sft
    out = home / "dpo"
    reports = _launch("dpo", sft_out / "merged", run_dir, out)
    _check_ranks("dpo", reports, out)
    assert not (out / "merged").exists()  # DPO's adapter is merged by trainer.merge, on request only
