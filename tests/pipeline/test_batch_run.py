"""A dialogue recipe through OpenAI's Batch API (loopback): the same rows as online, and a SIGKILL while
batches are in flight resumes by polling them, with no request submitted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from synthgen import estimate, run, run_status
from synthgen.cli import main
from synthgen.llm.batch import read_batches
from synthgen.llm.usage import TokenUsage, cost_usd, price_for
from synthgen.rundir import RunDir
from tests.conftest import REPO
from tests.pipeline.test_runner import FACULTY, plausible, rows
from tests.servers.batch_server import BatchConfig, BatchServer
from tests.servers.openai_server import ServerConfig


def dialogue_recipe(tmp_path: Path, *, batch: bool) -> Path:
    """The faculty recipe's dialogue step, every profile batched or not, without request limits."""
    recipe = yaml.safe_load(FACULTY.read_text(encoding="utf-8"))
    recipe["seeds"] = str(REPO / "seeds" / "faculty-sciences-es" / "seeds.yaml")
    recipe["personas"] = str(REPO / "seeds" / "faculty-sciences-es" / "personas.yaml")
    recipe["steps"] = [s for s in recipe["steps"] if s["generator"] == "dialogue"]
    for profile in recipe["models"].values():
        profile.pop("requests_per_minute", None)
        profile["batch"] = batch
    path = tmp_path / ("batch.yaml" if batch else "online.yaml")
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    with BatchServer(ServerConfig(responder=plausible), BatchConfig(completion_delay=0.2)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        monkeypatch.setenv("SYNTHGEN_BATCH_POLL_SECONDS", "0.05")
        yield srv


def online_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> Path:
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "home-online"))  # its own cache: nothing shared
    run(dialogue_recipe(tmp_path, batch=False), out=tmp_path / "online", limit=limit)
    return tmp_path / "online"


def test_a_batched_dialogue_recipe_gives_the_online_rows(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = online_reference(tmp_path, monkeypatch, limit=6)
    served_online = server.stats()["served_ok"]
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "home-batch"))
    result = run(dialogue_recipe(tmp_path, batch=True), out=tmp_path / "batch", limit=6)
    assert rows(tmp_path / "batch", "sft") == rows(reference, "sft") != []
    stats = server.batch_stats()
    assert stats["lines"] == server.stats()["served_ok"] - served_online  # every batched call a line
    # waves, not one batch per call: each dialogue turn is a student wave and an assistant wave
    turns = max(len(json.loads(r)["messages"]) // 2 for r in rows(tmp_path / "batch", "sft"))
    assert stats["created"] <= 2 * (turns + 1) + 2 < stats["lines"]
    assert stats["duplicates"] == 0
    report = json.loads((tmp_path / "batch" / "run.json").read_text())
    assert report["batch"]["profiles"]["student"] == "gpt-4o-mini-2024-07-18"
    assert report["batch"]["profiles"]["assistant"] == "gpt-4o-2024-08-06"
    assert report["batch"]["requests"] == stats["lines"] and report["batch"]["states"] == {
        "completed": stats["created"]
    }
    assert "batch" in report["prices"]["models"]["gpt-4o-2024-08-06"]["source"]
    assert "Batch API" in (tmp_path / "batch" / "README.md").read_text()
    assert result.batch["this_run"]["attached"] == 0


def test_sigkill_with_batches_in_flight_resumes_without_resubmitting(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = online_reference(tmp_path, monkeypatch, limit=5)
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "home-batch"))
    server.batch_config.completion_delay = 30.0  # the batch stays in flight until we kill the client
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "synthgen.cli", "run", str(dialogue_recipe(tmp_path, batch=True))]
    cmd += ["--out", str(out), "--limit", "5", "--yes"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = RunDir(out).batch_journal
    deadline = time.monotonic() + 60
    while not (server.batch_stats()["created"] and read_batches(journal)):
        assert time.monotonic() < deadline and process.poll() is None, "no batch was submitted"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = server.batch_stats()
    assert before["created"] == 1 and set(before["states"].values()) == {"in_progress"}
    stopped = run_status(out)  # what `synthgen status RUN_DIR` shows: the batch still at the provider
    assert [b["batch"] for b in stopped.pending_batches] == [before["batches"][0]["id"]]
    shown = CliRunner().invoke(main, ["status", str(out)])
    assert shown.exit_code == 0 and "1 still at the provider" in shown.output and "in flight" in shown.output
    server.batch_config.completion_delay = 0.2
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    after = server.batch_stats()
    assert after["duplicates"] == 0  # the re-run polled the in-flight batch: nothing submitted twice
    assert after["batches"][0] == before["batches"][0]
    report = json.loads((out / "run.json").read_text())
    assert report["batch"]["this_run"]["attached"] == len(before["batches"][0]["custom_ids"])
    assert rows(out, "sft") == rows(reference, "sft") != []
    assert not run_status(out).pending_batches


def test_estimate_gives_waves_and_the_batch_price(tmp_path: Path) -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "offline-demo" / "recipe.yaml").read_text(encoding="utf-8"))
    recipe["seeds"] = str(REPO / "seeds" / "faculty-sciences-es" / "seeds.yaml")
    recipe["personas"] = str(REPO / "seeds" / "faculty-sciences-es" / "personas.yaml")
    recipe["steps"] = [s for s in recipe["steps"] if s["generator"] == "dialogue"]
    for profile in recipe["models"].values():
        profile["batch"] = True
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    step = estimate(path).steps["dialogues"]
    low, high = recipe["steps"][0]["config"]["turns"]
    # a student wave and an assistant wave per turn, and the student's last (satisfied) turn
    assert 2 * low <= step.waves <= 2 * high + 1
    for model, m in step.by_model.items():
        online = price_for(model)
        assert m["batch"] and online is not None
        full = cost_usd(
            TokenUsage(prompt_tokens=int(m["prompt_tokens"]), completion_tokens=int(m["completion_tokens"])),
            online,
        )
        assert m["usd"] == pytest.approx(full / 2, rel=1e-6)
