"""Small recipes pointed at a real server, and what a finished (or failed) run accounted for.

The recipe is recipes/offline-demo/recipe.yaml cut down: a few seeds, every profile at the server
with a dummy key, zero prices, and the structured-output mode the server honours.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthgen import RunFailed, RunResult, run
from synthgen.rundir import RunDir
from tests.integration.servers import Server

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"
SEEDS = REPO / "seeds" / "faculty-sciences-es"
KEY_ENV = "SYNTHGEN_IT_DUMMY_KEY"  # the servers take any bearer token


def write_recipe(
    folder: Path,
    *,
    base_url: str,
    model: str,
    structured_output: str,
    max_tokens: int,
    seeds: int = 4,
    steps: list[dict[str, Any]] | None = None,
) -> Path:
    """A copy of the offline demo at ``folder/recipe.yaml`` whose every profile calls ``model`` at ``base_url``."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    all_seeds = yaml.safe_load((SEEDS / "seeds.yaml").read_text(encoding="utf-8"))
    # one seed per topic first, so the few kept differ; `source` names documents this copy lacks
    picked, topics = [], set()
    for seed in all_seeds["seeds"]:
        if seed["topic"] not in topics:
            topics.add(seed["topic"])
            picked.append({k: v for k, v in seed.items() if k != "source"})
    all_seeds["seeds"] = picked[:seeds]
    (folder / "seeds.yaml").write_text(yaml.safe_dump(all_seeds, allow_unicode=True), encoding="utf-8")
    personas = yaml.safe_load((SEEDS / "personas.yaml").read_text(encoding="utf-8"))
    personas["personas"] = personas["personas"][:2]
    (folder / "personas.yaml").write_text(yaml.safe_dump(personas, allow_unicode=True), encoding="utf-8")
    recipe["seeds"] = "seeds.yaml"
    recipe["personas"] = "personas.yaml"
    for profile in recipe["models"].values():
        profile.update(
            model=model,
            base_url=base_url,
            api_key_env=KEY_ENV,
            prices={"input": 0, "output": 0},
            structured_output=structured_output,
            max_tokens=max_tokens,
            max_concurrency=2,
            timeout=600,
        )
    if steps is not None:
        recipe["steps"] = steps
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Outcome:
    """What a run against a real server did, read back from its RUN_DIR."""

    result: RunResult | None  # None when the run raised RunFailed
    error: RunFailed | None
    steps: dict[str, dict[str, int]]  # per step: items (planned), ok, failed, rejected, not_started
    usage: dict[str, int]  # requests, prompt_tokens, completion_tokens, cached_tokens: every paid response
    failures: list[dict[str, Any]] = field(default_factory=list)


def planned_items(recipe: Path, out: Path, limit: int) -> dict[str, int]:
    """How many items each step plans, from the same recipe on the offline provider (the first step's
    plan does not depend on the model; later steps plan from their input's rows, so only a step whose
    input is the seeds is comparable)."""
    result = run(recipe, out=out, offline=True, limit=limit, use_cache=False)
    return {name: c.items for name, c in result.steps.items()}


def run_against_server(recipe: Path, out: Path, limit: int) -> Outcome:
    """``synthgen.run`` without the response cache, so every call reaches the server."""
    try:
        result: RunResult | None = run(recipe, out=out, limit=limit, use_cache=False, notify=lambda _: None)
        error = None
    except RunFailed as failed:  # a 135M model's rows may all be filtered: that is an honest ending
        result, error = None, failed
    rundir = RunDir(out)
    failures = _jsonl(rundir.report("failed"))
    if result is not None:
        steps = {
            name: {
                "items": c.items,
                "ok": c.ok,
                "failed": c.failed,
                "rejected": c.rejected,
                "not_started": c.not_started,
            }
            for name, c in result.steps.items()
        }
        total = result.usage["total"]
    else:
        steps = {}
        recipe_steps = yaml.safe_load(recipe.read_text(encoding="utf-8"))["steps"]
        for step in recipe_steps:
            entries = {e["item"]: e for e in _jsonl(rundir.journal(step["name"])) if "item" in e}
            statuses = Counter(e["status"] for e in entries.values())
            steps[step["name"]] = {
                "items": -1,  # unknown here: the caller compares with planned_items()
                "journaled": len(entries),
                "ok": statuses["ok"],
                "failed": statuses["failed"],
                "rejected": statuses["rejected"],
            }
        total = ledger_totals(rundir.ledger)
    usage = {
        k: int(total.get(k, 0)) for k in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens")
    }
    return Outcome(result, error, steps, usage, failures)


def ledger_totals(path: Path) -> dict[str, int]:
    """Sum of ``.synthgen/ledger.jsonl``: one line per paid response (what run.json's usage sums)."""
    total: Counter[str] = Counter()
    for entry in _jsonl(path):
        if "model" in entry:
            for key in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens"):
                total[key] += int(entry.get(key, 0))
    return dict(total)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_accounted(outcome: Outcome, planned: dict[str, int]) -> None:
    """Every planned item ended ok, failed, rejected or not started, and the reports say so."""
    first = next(iter(planned))
    if outcome.result is not None:
        for name, c in outcome.steps.items():
            assert c["items"] == c["ok"] + c["failed"] + c["rejected"] + c["not_started"], (name, c)
        assert outcome.steps[first]["items"] == planned[first], (outcome.steps, planned)
        assert outcome.steps[first]["not_started"] == 0
    else:
        assert outcome.error is not None
        c = outcome.steps[first]
        assert c["journaled"] == planned[first] == c["ok"] + c["failed"] + c["rejected"], (c, planned)
    for name, c in outcome.steps.items():
        reported = sum(1 for f in outcome.failures if f["step"] == name)
        assert reported == c["failed"], (name, reported, c)


def assert_doctor_and_auto(server: Server, folder: Path, *, json_schema: str, mode: str) -> None:
    """`synthgen doctor` probes the real server and finds ``json_schema`` (enforced, ignored); a
    profile left on `auto` then uses ``mode`` from the cache the doctor refreshed, with no new request."""
    import asyncio

    from synthgen import doctor, load_recipe
    from synthgen.llm.probe import capabilities

    path = write_recipe(
        folder, base_url=server.base_url, model=server.model, structured_output="auto", max_tokens=64
    )
    [report] = doctor(path)
    found = report.capabilities
    assert found.reachable, found.error
    assert found.json_schema == json_schema
    assert found.structured_output == mode
    assert found.probe_requests >= 2
    profile = load_recipe(path).models["assistant"]
    assert profile.structured_output == "auto"
    cached = asyncio.run(capabilities(profile))
    assert cached.structured_output == mode and cached.probed_at == found.probed_at
