"""A server that quotes the Authorization header in its error bodies never gets the key into what we report.

Canary keys (one shaped like an OpenAI key, one not) go out in real requests to the loopback server with
``echo_auth`` on; for every echoed status the raised error (``str``, ``message``, ``hint``, its whole
printed traceback), the captured logs and the cache file must not contain them.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest

from synthgen.errors import AuthenticationFailed, CompletionFailed, ProviderError, SynthgenError
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.llm.secrets import scrub
from tests.servers.openai_server import OpenAIServer, ServerConfig

CANARIES = {
    "CANARY_LLM_KEY": "canary-7f3a9c1e5b2d4f60a8e7",  # not key-shaped: only its value can find it
    "OPENAI_API_KEY": "sk-proj-canary0c5d9e1f2a3b4c6d7e8f",
}


@pytest.fixture(autouse=True)
def canaries(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)


def error_reply(status: int, message: str, **error: Any) -> dict[str, Any]:
    return {
        "status": status,
        "body": {"error": {"message": message, "type": "invalid_request_error", **error}},
    }


CASES: list[tuple[str, dict[str, Any] | None, str | None, type[SynthgenError]]] = [
    ("400", error_reply(400, "Invalid request."), None, ProviderError),
    (
        "400-param",
        error_reply(400, "Unsupported value: 'temperature'", param="temperature"),
        None,
        ProviderError,
    ),
    ("400-per-item", error_reply(400, "too long", code="context_length_exceeded"), None, CompletionFailed),
    ("401", error_reply(401, "Incorrect API key provided."), None, AuthenticationFailed),
    ("401-wrong-key", None, "sk-the-right-key", AuthenticationFailed),
    ("429", None, None, CompletionFailed),
    ("500", None, None, CompletionFailed),
    ("500-scripted-text", {"status": 500, "body": "plain text"}, None, CompletionFailed),
]


def leaks(text: str) -> list[str]:
    return [name for name, value in CANARIES.items() if value in text]


@pytest.mark.parametrize("key_env", ["CANARY_LLM_KEY", "OPENAI_API_KEY"])
@pytest.mark.parametrize(("case", "reply", "server_key", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_echoed_key_appears_nowhere(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    key_env: str,
    case: str,
    reply: dict[str, Any] | None,
    server_key: str | None,
    expected: type[SynthgenError],
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = [case] * 3 if case in ("429", "500") else []
    config = ServerConfig(
        echo_auth=True, api_key=server_key, fault_sequence=faults, retry_after=0.01, responder=lambda r: reply
    )
    with OpenAIServer(config) as server:
        p = ModelProfile(
            name="assistant",
            model="gpt-4o-2024-08-06",
            base_url=server.url,
            api_key_env=key_env,
            max_attempts=3,
        )
        cache = ResponseCache(tmp_path / "cache.sqlite3")
        async with ChatClient(cache=cache) as client:
            with pytest.raises(expected) as info:
                await client.complete([{"role": "user", "content": "hola"}], profile=p, sample=1)
        seen = server.stats()["auth_headers_seen"]
    assert seen == [f"Bearer {CANARIES[key_env]}"]  # the canary really went out, and came back
    error = info.value
    printed = "".join(traceback.format_exception(error))
    assert "Bearer ***" in str(error)  # the server's message is kept, with the key scrubbed out of it
    for where, text in {
        "str": str(error),
        "message": error.message,
        "hint": error.hint or "",
        "args": repr(error.args),
        "traceback": printed,
        "logs": caplog.text,
        "cache": b"".join(p.read_bytes() for p in tmp_path.iterdir()).decode("latin-1"),
    }.items():
        assert not leaks(text), (where, text)
    if isinstance(error, CompletionFailed):
        assert error.attempts == (3 if case in ("429", "500", "500-scripted-text") else 1)


def test_scrub_replaces_env_values_bearer_tokens_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "plain-value-without-shape-42")
    text = (
        "got plain-value-without-shape-42; Authorization: Bearer abc.DEF-123_456~/+= and "
        "'Bearer eyJhbGciOi.x.y' then sk-proj-AbCdEf0123456789xyz, hf_abcdefghijklmnopqrstuvwxyzABCDEFGH end"
    )
    clean = scrub(text, ["MY_KEY"])
    assert (
        "plain-value-without-shape-42" not in clean and "abc.DEF" not in clean and "eyJhbGciOi" not in clean
    )
    assert "AbCdEf0123456789" not in clean and "hf_abcdefghij" not in clean
    assert clean.startswith("got ***; Authorization: Bearer *** and 'Bearer ***' then sk-***, hf_*** end"), (
        clean
    )
    # ordinary prose survives: short values, words starting with sk-, a bearer with no token
    monkeypatch.setenv("SHORT", "abc")
    assert scrub("scikit-learn sk-learn abc Bearer", ["SHORT"]) == "scikit-learn sk-learn abc Bearer"
    assert scrub("nothing here", ["UNSET_VARIABLE_X"]) == "nothing here"
