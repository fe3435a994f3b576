"""synthgen's token totals equal what the server counted, failed items and abandoned requests included.

Why: a preference item whose judge failed left its sibling calls running (paid, never journaled), and
an attempt the client stopped waiting for was counted as nothing although a server may bill it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthgen import run
from synthgen.llm.usage import TokenUsage, UsageMeter
from tests.pipeline.test_reliability import DEMO, KEY, plausible
from tests.servers.openai_server import OpenAIServer, ServerConfig


def judged(request: dict[str, Any]) -> bool:
    return "RubricScores" in json.dumps(request.get("response_format") or {})


def doomed(request: dict[str, Any]) -> bool:
    """A third of the graded answers (by a hash of the judge prompt, so re-asks are doomed too)."""
    first = str(request["messages"][0]["content"]).encode()
    return hashlib.sha256(first).digest()[0] % 3 == 0


async def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    """Doomed judge calls violate the schema at once; the others answer 0.5 s later, so a doomed
    sibling fails while they are still waiting: they must be cancelled, not left to run."""
    if judged(request):
        if doomed(request):
            return {"fault": "schema_violation"}
        await asyncio.sleep(0.5)
    return plausible(request)


def recipe_file(tmp_path: Path, base_url: str) -> Path:
    recipe: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key in ("seeds", "personas"):
        recipe[key] = str((DEMO.parent / recipe[key]).resolve())
    for entry in recipe["models"].values():
        entry.update({"base_url": base_url, "api_key_env": KEY, "max_reasks": 1, "timeout": 1.0})
    del recipe["budget"]
    recipe["max_failure_rate"] = 1.0
    recipe["steps"][0]["config"]["turns"] = [1, 1]
    recipe["steps"][1]["config"]["candidates"] = 4
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_run_totals_equal_the_servers_counters_with_failed_items_and_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY, "sk-loopback")
    # two attempts hang until the client gives up (timeout 1 s), one gets a 500 (unbilled: no tokens)
    config = ServerConfig(responder=responder, fault_sequence=["hang", "500", "ok", "hang"], hang_max=30)
    out = tmp_path / "run"
    with OpenAIServer(config) as server:
        result = run(recipe_file(tmp_path, server.url), out=out, limit=8)
        stats = server.stats()

    prefs = result.steps["prefs"]
    assert prefs.failures.get("schema", 0) >= 2 and prefs.ok >= 1  # failed items with live siblings
    assert stats["faults"]["schema_violation"] >= 4 and stats["faults"]["hang"] == 2
    assert stats["client_disconnects"] > 2  # the two timeouts, and the cancelled siblings

    total = result.usage["total"]
    # A sibling cancelled in the instant the server finished it is billed there but never reaches us
    # (about one run in two on a loaded box): the server may count at most that many responses more.
    ledger = [json.loads(line) for line in (out / ".synthgen" / "ledger.jsonl").read_text().splitlines()]
    largest = max(entry.get("prompt_tokens", 0) + entry.get("completion_tokens", 0) for entry in ledger)
    raced = stats["status"]["200"] - (total["requests"] - total["unanswered"])
    assert 0 <= raced <= total["unanswered"]
    for kind in ("prompt_tokens", "completion_tokens"):
        assert 0 <= stats["usage_all"][kind] - total[kind] <= raced * largest, kind
        if raced == 0:
            assert total[kind] == stats["usage_all"][kind], kind  # exact when no cancellation raced
    # every request the server answered with a completion, plus every one it never answered
    assert total["unanswered"] == stats["client_disconnects"] + raced
    assert stats["requests"] == total["requests"] + stats["status"]["500"]

    # the journals (per item, failed ones included) hold the same usage as the ledger
    journaled = UsageMeter()
    for step in ("dialogues", "prefs"):
        for line in (out / ".synthgen" / "journal" / f"{step}.jsonl").open(encoding="utf-8"):
            journaled.merge(json.loads(line).get("usage", {}))
    assert {k: v for k, v in journaled.snapshot()["total"].items() if k != "cost_usd"} == {
        k: v for k, v in total.items() if k != "cost_usd"
    }
    failed = [
        json.loads(line)
        for line in (out / ".synthgen" / "journal" / "prefs.jsonl").open(encoding="utf-8")
        if json.loads(line)["status"] == "failed"
    ]
    assert any(
        u["unanswered"] for entry in failed for u in entry["usage"]["by_model"].values()
    )  # a failed item's cancelled siblings are in its own journal entry


def test_usage_written_before_unanswered_existed_still_loads() -> None:
    meter = UsageMeter()
    old = {"requests": 2, "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0}
    meter.merge({"by_model": {"gpt-4o": {**old, "reasoning_tokens": 0, "cost_usd": 0.1}}})
    meter.merge({"by_model": {"gpt-4o": {"requests": 1, "unanswered": 1, "later_field": 7}}})
    assert meter.total() == TokenUsage(
        requests=3, prompt_tokens=10, completion_tokens=5, cost_usd=0.1, unanswered=1
    )


def test_prices_come_from_genai_prices_with_a_snapshot_fallback_and_run_json_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synthgen.llm.usage as usage
    from synthgen.llm.profile import Prices

    assert usage.price_quote("gpt-4o-mini-2024-07-18") == (
        Prices(input=0.15, output=0.6, cached_input=0.075),
        "genai-prices",
    )
    assert usage.price_quote("my-local-llama") == (None, "unpriced")
    monkeypatch.setattr(usage, "_genai_prices", lambda: None)  # the package absent: the shipped snapshot
    usage._maintained.cache_clear()
    try:
        assert usage.price_quote("gpt-4o-2024-08-06") == (
            Prices(input=2.5, output=10.0, cached_input=1.25),
            "snapshot",
        )
        assert (
            usage.price_source()["date"]
            == json.loads((Path(usage.__file__).with_name("prices.json")).read_text())["date"]
        )
    finally:
        usage._maintained.cache_clear()
    monkeypatch.undo()

    monkeypatch.setenv(KEY, "sk-loopback")
    with OpenAIServer(ServerConfig(responder=plausible)) as server:
        path = recipe_file(tmp_path, server.url)
        recipe = yaml.safe_load(path.read_text())
        recipe["models"]["student"]["model"] = "my-local-llama"  # unpriced: n/a, never $0.00
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False))
        result = run(path, out=tmp_path / "run", limit=2)
    prices = result.prices
    assert prices["source"] == "genai-prices" and prices["version"]
    assert prices["models"]["gpt-4o-2024-08-06"] == {
        "input": 2.5,
        "output": 10.0,
        "cached_input": 1.25,
        "source": "genai-prices",
    }
    assert prices["models"]["my-local-llama"] == {"source": "unpriced"}
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "Prices from genai-prices" in card and "n/a (unpriced)" in card
    assert "No price known for: `my-local-llama`" in card
