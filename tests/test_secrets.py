"""No key reaches disk or the terminal, even from a server that quotes the Authorization header back.

Every env var a profile can name holds a canary (the default ``OPENAI_API_KEY`` and two ``api_key_env``
names, one value shaped like a key and two not); the loopback server quotes the request's
Authorization header in every 400/401/429/500 body. Real ``synthgen run`` invocations (through the
CLI, so the terminal output is captured) meet per-item 400s, 429s and 500s (recorded as failures in
the journals and ``failures.jsonl``), then a 401 and a bad-request 400 (the run stops, exit 2).
The first RUN_DIR is published to the loopback Hub (with a canary HF token). Then every file under
the RUN_DIRs and ``SYNTHGEN_HOME``, every file the Hub received, the terminal output and the logs
are searched for the canaries: zero hits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from synthgen.cli import main
from synthgen.llm.offline import offline_reply
from tests.conftest import REPO
from tests.servers.hub_server import HubServer
from tests.servers.openai_server import OpenAIServer, ServerConfig

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"
REPO_ID = "my-faculty/secrets-check"
CANARIES = {
    "OPENAI_API_KEY": "sk-proj-canaryA1b2C3d4E5f6G7h8I9j0",  # the student profile names no api_key_env
    "SYNTHGEN_CANARY_ASSISTANT_KEY": "canary-assistant-5e0c7f1a9b3d",  # not key-shaped: found by value
    "SYNTHGEN_CANARY_JUDGE_KEY": "CanaryJudge_77d1c2e9f0a4b8",
    "HF_TOKEN": "hf_canaryQwErTyUiOpAsDfGhJkLzXcVbNm",  # named by no profile: must never be sent either
}
PROFILE_KEYS = {
    "student": None,
    "assistant": "SYNTHGEN_CANARY_ASSISTANT_KEY",
    "judge": "SYNTHGEN_CANARY_JUDGE_KEY",
}


def plausible(request: dict[str, Any]) -> str | dict[str, Any]:
    """The offline provider's content; one request in eight is too long for the model (a per-item 400)."""
    digest = hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).digest()
    if digest[0] % 8 == 0:
        message = "This model's maximum context length is 128000 tokens."
        error = {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}
        return {"status": 400, "body": {"error": error}}
    return str(offline_reply(request)["choices"][0]["message"]["content"])


def bad_request(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": 400,
        "body": {"error": {"message": "Invalid request.", "type": "invalid_request_error"}},
    }


def recipe_for(tmp_path: Path, url: str) -> Path:
    recipe: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key in ("seeds", "personas"):
        recipe[key] = str((DEMO.parent / recipe[key]).resolve())
    for name, profile in recipe["models"].items():
        profile.update(base_url=url, max_attempts=2, timeout=10.0)
        if PROFILE_KEYS[name]:
            profile["api_key_env"] = PROFILE_KEYS[name]
    del recipe["budget"]
    recipe["max_failure_rate"] = 1.0  # finalize despite the injected failures: its files are searched too
    recipe["steps"][0]["config"].update(per_seed=1, turns=[1, 2])
    recipe["steps"][1]["config"]["candidates"] = 2
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def publish(run_dir: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    """``synthgen publish`` in a process of its own (huggingface_hub reads HF_ENDPOINT at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=os.environ["HF_HOME"], HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN=CANARIES["HF_TOKEN"])  # fmt: skip
    command = [sys.executable, "-m", "synthgen.cli", "publish", str(run_dir), "--repo-id", REPO_ID]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def hits(texts: dict[str, bytes]) -> dict[str, list[str]]:
    """Where each canary occurs (as text, in any file or output); empty when nothing leaked."""
    found: dict[str, list[str]] = {}
    for where, content in texts.items():
        names = [name for name, value in CANARIES.items() if value.encode() in content]
        if names:
            found[where] = names
    return found


def test_no_canary_anywhere_after_runs_against_an_echoing_server(
    tmp_path: Path, hermetic: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    outputs: dict[str, bytes] = {}
    config = ServerConfig(
        echo_auth=True, responder=plausible, fault_rate=0.25, faults=("429", "500"), retry_after=0.01, seed=5
    )
    with OpenAIServer(config) as server:
        recipe = recipe_for(tmp_path, server.url)
        first = invoke(
            "run", recipe, "--out", tmp_path / "run", "--limit", "12", "--concurrency", "8", "--yes"
        )
        stats = server.stats()
        outputs["run: output"] = first.output.encode()
        outputs["run: exception"] = repr(first.exception).encode()
        assert first.exit_code in (0, 1), first.output
        # the 401 stops the run with exit 2, naming the field; then a 400 no parameter explains
        server.update_config(api_key="sk-the-right-key-is-another", fault_rate=0.0)
        denied = invoke("run", recipe, "--out", tmp_path / "run-401", "--limit", "1", "--yes")
        server.update_config(api_key=None, responder=bad_request)
        refused = invoke("run", recipe, "--out", tmp_path / "run-400", "--limit", "1", "--yes")
        seen = set(server.stats()["auth_headers_seen"])
    for name, result in (("run-401", denied), ("run-400", refused)):
        outputs[f"{name}: output"] = result.output.encode()
        outputs[f"{name}: exception"] = repr(result.exception).encode()
        assert result.exit_code == 2, result.output
        assert "Bearer ***" in result.output  # the server's words are kept, the key scrubbed out of them
    assert "models.student.api_key_env" in denied.output and "401" in denied.output
    # the keys really went out (and so came back in the bodies): the canaries were put to the test
    assert {f"Bearer {CANARIES[n]}" for n in ("OPENAI_API_KEY", *filter(None, PROFILE_KEYS.values()))} <= seen
    assert stats["faults"].get("429") and stats["faults"].get("500") and stats["status"].get("400")
    failures = (tmp_path / "run" / ".synthgen" / "failures.jsonl").read_text(encoding="utf-8")
    assert failures.count("Bearer ***") >= 2, failures  # echoed failures were recorded, scrubbed

    assert first.exit_code == 0 and (tmp_path / "run" / "run.json").is_file(), first.output
    with HubServer(tokens={CANARIES["HF_TOKEN"]: "write"}) as hub:  # the Hub sees the token, as it must
        published = publish(tmp_path / "run", hub.url)
        outputs["publish: output"] = (published.stdout + published.stderr).encode()
        assert published.returncode == 0, published.stderr
        for path, content in hub.files(REPO_ID).items():
            outputs[f"hub: {path}"] = content
    assert any(name.startswith("hub: data/") for name in outputs)

    texts = {
        str(p): p.read_bytes()
        for root in (tmp_path, hermetic)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    texts.update(outputs)
    texts["logs"] = caplog.text.encode()
    assert len(texts) > 20
    leaked = hits(texts)
    assert sum(len(names) for names in leaked.values()) == 0, leaked
