"""The runner end to end against the loopback server: faults, counts, splits, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest

from synthgen import load_recipe, run
from synthgen.errors import ResumeError
from synthgen.llm.offline import offline_reply
from synthgen.pipeline.estimate import estimate
from tests.conftest import REPO
from tests.servers.openai_server import OpenAIServer, ServerConfig

FACULTY = REPO / "recipes" / "faculty-sciences-es" / "recipe.yaml"
DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


def plausible(request: dict[str, Any]) -> str:
    """Loopback replies with the offline provider's extractive content: real Spanish, schema-valid."""
    return str(offline_reply(request)["choices"][0]["message"]["content"])


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Any:
    def start(**config: Any) -> OpenAIServer:
        server = OpenAIServer(ServerConfig(responder=plausible, **config)).__enter__()
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        started.append(server)
        return server

    started: list[OpenAIServer] = []
    yield start
    for server in started:
        server.__exit__(None, None, None)


def unthrottled(tmp_path: Path) -> Path:
    """The faculty recipe without its production request limits (the loopback server has none)."""
    text = FACULTY.read_text(encoding="utf-8").replace("../../seeds/", str(REPO / "seeds") + "/")
    path = tmp_path / "faculty.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if "requests_per_minute" not in line))
    return path


def rows(run_dir: Path, config: str) -> list[str]:
    if not (run_dir / "data" / config).exists():
        return []
    data = datasets.load_dataset(str(run_dir), config)
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for split in data.values() for r in split)


def test_faulty_endpoint_run_accounts_for_every_item(endpoint: Any, tmp_path: Path) -> None:
    server = endpoint(
        fault_rate=0.2,
        faults=(
            "429",
            "408",
            "500",
            "503",
            "malformed_json",
            "invalid_json_content",
            "truncated",
            "disconnect",
        ),
        retry_after=0.01,
        seed=3,
    )
    recipe = load_recipe(unthrottled(tmp_path))
    result = run(recipe, out=tmp_path / "run", limit=24, concurrency=16)
    report = json.loads((tmp_path / "run" / "run.json").read_text())
    for name, c in report["steps"].items():
        assert c["items"] == c["ok"] + c["failed"] + c["rejected"] + c["not_started"], name
        assert c["not_started"] == 0
        assert sum(c["failures"].values()) == c["failed"]
        assert c["rows"] >= c["ok"]
    assert report["steps"]["dialogues"]["items"] == 24
    assert report["steps"]["dialogues"]["rows"] > 18
    stats = server.stats()
    assert sum(stats["faults"].values()) > 30
    assert result.usage["total"]["prompt_tokens"] == stats["usage_all"]["prompt_tokens"]
    # no seed has rows in both splits
    splits = json.loads((tmp_path / "run" / ".synthgen" / "splits.json").read_text())
    data = datasets.load_dataset(str(tmp_path / "run"), "sft")
    for split, dataset in data.items():
        for row in dataset:
            assert splits[row["seed_ids"][0]] == split
            assert all(splits[s] == split for s in row["seed_ids"])
    failures = (tmp_path / "run" / ".synthgen" / "failures.jsonl").read_text().splitlines()
    assert len(failures) == sum(c["failed"] for c in report["steps"].values())


def test_resume_after_sigkill_gives_the_same_rows(endpoint: Any, tmp_path: Path) -> None:
    server = endpoint(latency=0.02)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "synthgen.cli",
        "run",
        str(unthrottled(tmp_path)),
        "--limit",
        "10",
        "--concurrency",
        "4",
        "--yes",
    ]

    reference_home = tmp_path / "home-reference"
    subprocess.run(
        [*cmd, "--out", str(tmp_path / "reference")],
        env={**env, "SYNTHGEN_HOME": str(reference_home)},
        check=True,
        capture_output=True,
        timeout=300,
    )
    # identical requests of two generators (a dialogue turn and a grounded candidate) are paid once each
    baseline_duplicates = server.stats()["duplicates"]
    server.reset()

    out = tmp_path / "killed"
    rng = random.Random(1)
    in_flight_at_kills = []
    for _ in range(10):
        process = subprocess.Popen(
            [*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # kill somewhere in generation or finalize: after this process's first request (imports take
        # 1.5 s on an idle machine and several on a loaded one), then up to 2.5 s later
        seen, deadline = server.stats()["requests"], time.monotonic() + 120
        while server.stats()["requests"] == seen and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.5))
        in_flight_at_kills.append(server.stats()["in_flight"])
        process.send_signal(signal.SIGKILL)
        process.wait()
    # answers the server gave that no process persisted: what was in flight (client side) at the kills
    cache = sqlite3.connect(os.environ["SYNTHGEN_HOME"] + "/cache.sqlite3")
    persisted = cache.execute("SELECT count(*) FROM responses").fetchone()[0]
    cache.close()
    lost_in_flight = server.stats()["served_ok"] - persisted + sum(in_flight_at_kills)
    finished = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert rows(out, "sft") == rows(tmp_path / "reference", "sft")
    assert rows(out, "prefs") == rows(tmp_path / "reference", "prefs")
    stats = server.stats()
    # a request whose answer was persisted is never sent again: only those in flight at a kill are
    resent = stats["duplicates"] - baseline_duplicates
    assert 0 <= resent <= lost_in_flight
    assert lost_in_flight <= 10 * 8  # at most the concurrency of the two model keys (4 + 4) per kill
    # every answer that reached a process was paid and is in run.json, though its item was killed in
    # flight (on resume it is a free cache hit): the ledger counts it; the journals alone did not
    cache = sqlite3.connect(os.environ["SYNTHGEN_HOME"] + "/cache.sqlite3")
    cached_answers = cache.execute("SELECT count(*) FROM responses").fetchone()[0]
    cache.close()
    paid = json.loads((out / "run.json").read_text())["usage"]["total"]
    assert cached_answers <= paid["requests"] <= stats["served_ok"]
    assert paid["completion_tokens"] <= stats["usage_all"]["completion_tokens"]


def test_changed_recipe_refuses_to_resume(tmp_path: Path) -> None:
    recipe = load_recipe(DEMO)
    run(recipe, out=tmp_path / "run", offline=True, limit=2)
    changed = load_recipe(DEMO)
    changed.system_prompt = "Otro prompt de despliegue."
    with pytest.raises(ResumeError, match="system_prompt"):
        run(changed, out=tmp_path / "run", offline=True, limit=2)


def test_limit_then_full_run_resumes_without_new_calls(tmp_path: Path) -> None:
    recipe = load_recipe(DEMO)
    first = run(recipe, out=tmp_path / "run", offline=True, limit=3)
    assert first.steps["dialogues"].items == 3
    again = run(recipe, out=tmp_path / "run", offline=True, limit=3)
    assert again.usage_this_run["total"]["requests"] == 0  # everything journaled: nothing is sent
    assert again.usage["total"] == first.usage["total"]  # the dataset's usage is still all of it
    assert rows(tmp_path / "run", "sft") and again.steps["dialogues"].rows == first.steps["dialogues"].rows


def test_usage_adds_up_across_resumed_invocations(tmp_path: Path) -> None:
    recipe = load_recipe(DEMO)
    first = run(recipe, out=tmp_path / "run", offline=True, limit=2)
    second = run(recipe, out=tmp_path / "run", offline=True, limit=5)
    paid = first.usage_this_run["total"]["requests"] + second.usage_this_run["total"]["requests"]
    assert second.usage_this_run["total"]["requests"] > 0
    assert second.usage["total"]["requests"] == paid
    steps = second.steps
    assert sum(c.usage["requests"] for c in steps.values()) == paid
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["usage"]["total"]["requests"] == paid


def test_splits_are_per_seed_stratified_and_stable(tmp_path: Path) -> None:
    from synthgen.pipeline.runner import assign_splits

    recipe = load_recipe(FACULTY)
    splits = assign_splits(recipe.loaded_seeds, 0.1, 13)
    assert splits == assign_splits(list(reversed(recipe.loaded_seeds)), 0.1, 13)
    topics = Counter(s.topic for s in recipe.loaded_seeds if splits[s.id] == "test")
    assert len(topics) >= 8  # stratified: most topics have a held-out seed
    assert 0.05 < sum(topics.values()) / len(recipe.loaded_seeds) < 0.2


def test_budget_holds_across_invocations_and_in_flight_items_reserve_their_cost(
    endpoint: Any, tmp_path: Path
) -> None:
    """budget.max_usd is the dataset's: a first run stops within one item of it (items in flight have
    reserved their estimate), and the same command again sends nothing (the first release paid the
    budget again on each invocation, $2.51 against max_usd 0.5 over three)."""
    server = endpoint()
    recipe = load_recipe(unthrottled(tmp_path))
    recipe.budget.max_usd = 0.05
    out = tmp_path / "run"
    result = run(recipe, out=out, limit=60, concurrency=4)
    assert result.budget["exhausted"]
    item_costs = [
        sum(u["cost_usd"] for u in json.loads(line)["usage"]["by_model"].values())
        for step in ("dialogues", "prefs")
        if (out / ".synthgen" / "journal" / f"{step}.jsonl").exists()
        for line in (out / ".synthgen" / "journal" / f"{step}.jsonl").read_text().splitlines()
    ]
    assert result.cost_usd <= 0.05 + max(item_costs)
    dialogues = result.steps["dialogues"]
    assert dialogues.not_started > 0
    assert dialogues.items == dialogues.ok + dialogues.failed + dialogues.rejected + dialogues.not_started
    assert (out / "run.json").exists()

    sent = server.stats()["requests"]
    again = run(recipe, out=out, limit=60, concurrency=4)
    assert server.stats()["requests"] == sent  # nothing left of the dataset's budget
    assert again.budget["exhausted"] and again.cost_usd == pytest.approx(result.cost_usd)


def test_pilot_estimate_is_within_15_percent_of_the_run(endpoint: Any, tmp_path: Path) -> None:
    def wordier(request: dict[str, Any]) -> str:
        # a "real" model more verbose than the offline provider, so the pilot has something to correct
        content = plausible(request)
        return content if content.startswith("{") else content + " " + content

    server = endpoint()
    server.config.responder = wordier
    recipe = load_recipe(DEMO)
    recipe.budget.max_usd = None
    recipe.loaded_seeds = recipe.loaded_seeds[:36]  # keeps the test short; the method is size-independent
    simulated = estimate(recipe)
    planned = estimate(recipe, pilot=5)
    assert planned.tokens > simulated.tokens  # the pilot measured longer answers
    server.reset()
    result = run(recipe, out=tmp_path / "run")
    measured = result.usage["total"]["total_tokens"] + sum(
        u["prompt_tokens"] + u["completion_tokens"] for u in result.usage["cached_by_model"].values()
    )
    assert abs(planned.tokens - measured) / measured < 0.15, (planned.tokens, measured)
    print(
        f"pilot estimate {planned.tokens:.0f} tokens vs measured {measured}: "
        f"{(planned.tokens - measured) / measured:+.1%}"
    )


def test_a_run_resolves_each_generator_once_and_fingerprints_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe resolves each step's generator once (entry point + Config validation), and a run
    computes the fingerprint (which renders every template) once; the first release built 32
    generator instances and 3 fingerprints for a 2-step offline run."""
    from synthgen.recipe import Recipe
    from synthgen.recipe import model as recipe_module

    lookups: Counter[str] = Counter()
    real_lookup, real_fingerprint = recipe_module.get_generator, Recipe.fingerprint

    def counting_lookup(name: str) -> Any:
        lookups[name] += 1
        return real_lookup(name)

    fingerprints = 0

    def counting_fingerprint(self: Recipe) -> str:
        nonlocal fingerprints
        fingerprints += 1
        return real_fingerprint(self)

    recipe = load_recipe(DEMO)
    monkeypatch.setattr(recipe_module, "get_generator", counting_lookup)
    monkeypatch.setattr(Recipe, "fingerprint", counting_fingerprint)
    result = run(recipe, out=tmp_path / "run", offline=True, limit=4)
    assert result.steps["dialogues"].rows > 0
    assert lookups == Counter()  # resolved while loading, never again
    assert fingerprints == 1
    assert result.fingerprint == real_fingerprint(recipe)
