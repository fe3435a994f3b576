"""synthgen against llama.cpp's llama-server serving SmolLM2-135M-Instruct (GGUF, Q4_1).

A 135M model writes weak Spanish: the quality filters may reject most rows, and a run may honestly
end in RunFailed. These tests assert accounting and protocol, not quality: every planned item is
accounted for, and synthgen's request and token totals equal what the server says it processed.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.recipes import (
    KEY_ENV,
    assert_accounted,
    assert_doctor_and_auto,
    planned_items,
    run_against_server,
    write_recipe,
)
from tests.integration.servers import (
    Server,
    http_post_json,
    llama_completions_logged,
    llama_metrics,
    metrics_delta,
)

pytestmark = pytest.mark.integration

LIMIT = 3
#: what `structured_output: auto` / `synthgen doctor` should find for this server
EXPECTED_STRUCTURED_OUTPUT = "json_schema"


def settled_metrics(server: Server, timeout: float = 30.0) -> dict[str, float]:
    """/metrics once no request is in flight (counters of a request still running would be partial)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = llama_metrics(server)
        if metrics.get("llamacpp:requests_processing", 0) == 0 or time.monotonic() > deadline:
            return metrics
        time.sleep(0.2)


def server_totals(delta: dict[str, float], completions: int) -> dict[str, int]:
    """The server's side, in synthgen's usage terms: prompt tokens are evaluated + reused from cache."""
    evaluated = int(delta.get("llamacpp:prompt_tokens_total", 0))
    cached = int(delta.get("llamacpp:prompt_tokens_cached_total", 0))
    return {
        "requests": completions,
        "prompt_tokens": evaluated + cached,
        "completion_tokens": int(delta.get("llamacpp:tokens_predicted_total", 0)),
        "cached_tokens": cached,
    }


def probe_json_schema(server: Server, temperature: float) -> tuple[int, dict]:
    """One chat completion asking for a json_schema answer: what `synthgen doctor` would probe."""
    return http_post_json(
        server.base_url + "/chat/completions",
        {
            "model": server.model,
            "messages": [{"role": "user", "content": "¿Cuántos años tiene un grado? Responde en JSON."}],
            "max_tokens": 64,
            "temperature": temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "years",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"years": {"type": "integer"}},
                        "required": ["years"],
                        "additionalProperties": False,
                    },
                },
            },
        },
    )


def test_llama_server_enforces_json_schema(llama_server: Server) -> None:
    status, body = probe_json_schema(llama_server, temperature=1.0)
    assert status == 200, body
    answer = json.loads(body["choices"][0]["message"]["content"])  # the grammar allows nothing else
    assert set(answer) == {"years"} and isinstance(answer["years"], int), answer
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.timeout(1500)  # ~10 min on 2 busy cores (26 requests at ~4-20 tokens/s)
def test_run_against_llama_server_accounts_for_every_item_and_token(
    llama_server: Server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "dummy")
    recipe = write_recipe(
        tmp_path / "recipe",
        base_url=llama_server.base_url,
        model=llama_server.model,
        structured_output=EXPECTED_STRUCTURED_OUTPUT,
        max_tokens=256,
        steps=[
            {
                "name": "dialogues",
                "generator": "dialogue",
                "config": {"per_seed": 1, "turns": [1, 2], "student": "student", "assistant": "assistant"},
            },
            {
                "name": "prefs",
                "generator": "preference",
                "from": "dialogues",
                "config": {"candidates": 2, "judge": "judge", "margin": 1.0, "min_chosen_score": 5.0},
            },
        ],
    )
    planned = planned_items(recipe, tmp_path / "offline", LIMIT)

    before, logged_before = settled_metrics(llama_server), llama_completions_logged(llama_server)
    outcome = run_against_server(recipe, tmp_path / "run", LIMIT)
    after, logged_after = settled_metrics(llama_server), llama_completions_logged(llama_server)
    server = server_totals(metrics_delta(before, after), logged_after - logged_before)
    print(f"\nsteps: {outcome.steps}\nerror: {outcome.error}\nsynthgen: {outcome.usage}\nserver:   {server}")

    if outcome.error is not None:  # an honest ending for a 135M model, not a protocol failure
        assert "no step produced a row" in str(outcome.error) or "did not run" in str(outcome.error), (
            outcome.error
        )
    assert_accounted(outcome, planned)
    assert outcome.usage["requests"] > 0
    # EXACT on purpose (issue 12): synthgen's paid totals (run.json usage.total, or the ledger when the
    # run failed) must equal llama-server's own counters over the run. A difference here is an
    # accounting bug in synthgen (or a counting difference to report), not a reason to loosen this.
    assert outcome.usage == server


def test_doctor_finds_what_this_server_does_and_auto_picks_it(
    llama_server: Server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "dummy")
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "home"))
    assert_doctor_and_auto(
        llama_server, tmp_path / "recipe", json_schema="enforced", mode=EXPECTED_STRUCTURED_OUTPUT
    )
