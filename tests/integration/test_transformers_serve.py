"""synthgen against `transformers serve` with SmolLM2-135M-Instruct (the GGUF, dequantized).

This server ignores `response_format` (so the recipe uses json_object: the schema is stated in the
prompt and validated by synthgen) and `temperature` (it decodes greedily unless the checkpoint's
generation config samples). It has no token counters; its access log counts the requests.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.recipes import (
    KEY_ENV,
    assert_accounted,
    assert_doctor_and_auto,
    planned_items,
    run_against_server,
    write_recipe,
)
from tests.integration.servers import Server, http_post_json

pytestmark = pytest.mark.integration

LIMIT = 2  # it decodes one request at a time, slowly on CPU
#: what `structured_output: auto` / `synthgen doctor` should find for this server
EXPECTED_STRUCTURED_OUTPUT = "json_object"


def completions_logged(server: Server) -> int:
    """Chat completions the server answered 200, from uvicorn's access log."""
    return server.log_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def probe(server: Server, **extra: object) -> tuple[int, dict]:
    """One short chat completion with ``extra`` request fields: what `synthgen doctor` would probe."""
    return http_post_json(
        server.base_url + "/chat/completions",
        {
            "model": server.model,
            "messages": [{"role": "user", "content": "¿Cuántos años tiene un grado?"}],
            "max_tokens": 12,
            **extra,
        },
    )


def test_transformers_serve_ignores_temperature(transformers_server: Server) -> None:
    first = probe(transformers_server, temperature=1.5, seed=1)
    second = probe(transformers_server, temperature=1.5, seed=2)
    assert first[0] == second[0] == 200, (first, second)
    # greedy decoding whatever the temperature and seed: both answers are the same
    assert first[1]["choices"][0]["message"]["content"] == second[1]["choices"][0]["message"]["content"]


def test_transformers_serve_answers_json_schema_without_enforcing_it(transformers_server: Server) -> None:
    schema = {"type": "object", "properties": {"years": {"type": "integer"}}, "required": ["years"]}
    status, body = probe(
        transformers_server,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "years", "schema": schema}},
    )
    assert status == 200, body  # accepted (not an error), and ignored: no grammar constrains the text
    content = body["choices"][0]["message"]["content"]
    try:
        answer = json.loads(content)
    except json.JSONDecodeError:
        answer = None
    assert not (isinstance(answer, dict) and set(answer) == {"years"}), content


def test_transformers_serve_refuses_another_model_name(transformers_server: Server) -> None:
    status, body = http_post_json(
        transformers_server.base_url + "/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 4},
    )
    assert 400 <= status < 500, (status, body)


@pytest.mark.timeout(1500)
def test_run_against_transformers_serve_accounts_for_every_item(
    transformers_server: Server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "dummy")
    recipe = write_recipe(
        tmp_path / "recipe",
        base_url=transformers_server.base_url,
        model=transformers_server.model,
        structured_output=EXPECTED_STRUCTURED_OUTPUT,
        max_tokens=64,
        steps=[
            {
                "name": "dialogues",
                "generator": "dialogue",
                "config": {"per_seed": 1, "turns": [1, 1], "student": "student", "assistant": "assistant"},
            }
        ],
    )
    planned = planned_items(recipe, tmp_path / "offline", LIMIT)
    logged_before = completions_logged(transformers_server)
    outcome = run_against_server(recipe, tmp_path / "run", LIMIT)
    served = completions_logged(transformers_server) - logged_before
    print(
        f"\nserver log: {transformers_server.log}\nsteps: {outcome.steps}\nerror: {outcome.error}"
        f"\nsynthgen: {outcome.usage}\nserved: {served}"
    )

    if outcome.error is not None:
        assert "no step produced a row" in str(outcome.error) or "items failed" in str(outcome.error), (
            outcome.error
        )
    assert_accounted(outcome, planned)
    assert outcome.usage["requests"] > 0
    # EXACT on purpose (issue 12): every paid response synthgen counted is one the server answered 200
    assert outcome.usage["requests"] == served
    assert outcome.usage["completion_tokens"] > 0


def test_doctor_finds_what_this_server_does_and_auto_picks_it(
    transformers_server: Server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "dummy")
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "home"))
    assert_doctor_and_auto(
        transformers_server, tmp_path / "recipe", json_schema="ignored", mode=EXPECTED_STRUCTURED_OUTPUT
    )
