"""Servers that bend the protocol: the probe classifies each, ``auto`` picks what works, errors keep
the server's words. Each behaviour is reproduced by the loopback server over real HTTP."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import pydantic
import pytest

from synthgen.errors import CompletionFailed, ProviderError
from synthgen.llm.client import ChatClient
from synthgen.llm.probe import cache_file, cached, capabilities, probe
from synthgen.llm.profile import ModelProfile
from tests.servers.openai_server import LLAMA_CPP_PYTHON_REJECTION, OpenAIServer, ServerConfig


class Verdict(pydantic.BaseModel):
    rationale: str
    score: int = pydantic.Field(ge=1, le=10)
    label: Literal["good", "bad"]


def profile(url: str, **kw: Any) -> ModelProfile:
    base: dict[str, Any] = {
        "name": "assistant",
        "model": "local-model",
        "base_url": url,
        "api_key_env": "TEST_KEY",
        "timeout": 5.0,
    }
    return ModelProfile(**{**base, **kw})


MESSAGES = [{"role": "user", "content": "Juzga esta respuesta."}]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test-secret-123")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"rpm_limit": 100_000},
            {
                "json_schema": "enforced",
                "json_object": True,
                "sampling_varies": True,
                "usage_reported": True,
                "rate_limit_headers": True,
                "reasoning_field": None,
                "max_completion_tokens_honoured": True,
                "structured_output": "json_schema",
                "token_parameter": "max_completion_tokens",
            },
        ),
        (  # llama-cpp-python
            {"json_schema_mode": "reject"},
            {"json_schema": "rejected", "json_object": True, "structured_output": "json_object"},
        ),
        (  # transformers serve
            {"json_schema_mode": "ignore", "temperature_ignored": True},
            {
                "json_schema": "ignored",
                "sampling_varies": False,
                "rate_limit_headers": False,
                "structured_output": "json_object",
            },
        ),
        (  # Ollama
            {"ignore_max_completion_tokens": True, "reasoning_field": "reasoning"},
            {
                "max_completion_tokens_honoured": False,
                "max_tokens_honoured": True,
                "token_parameter": "max_tokens",
                "reasoning_field": "reasoning",
            },
        ),
        ({"reasoning_field": "reasoning_content"}, {"reasoning_field": "reasoning_content"}),  # llama.cpp
    ],
    ids=["openai", "llama-cpp-python", "transformers-serve", "ollama", "llama-server"],
)
async def test_the_probe_classifies_each_server(config: dict[str, Any], expected: dict[str, Any]) -> None:
    with OpenAIServer(ServerConfig(**config)) as server:
        caps = await probe(profile(server.url))
        requests = server.stats()["requests"]
    assert caps.reachable, caps.error
    assert {k: getattr(caps, k) for k in expected} == expected
    assert caps.probe_requests == requests <= 6  # cheap, and it counts its own cost
    assert caps.probe_tokens > 0


async def test_the_probe_is_cached_per_endpoint_and_model_and_never_runs_offline() -> None:
    with OpenAIServer(ServerConfig(json_schema_mode="reject")) as server:
        p = profile(server.url)
        first = await capabilities(p)
        after_first = server.stats()["requests"]
        second = await capabilities(p)
        assert server.stats()["requests"] == after_first  # answered from SYNTHGEN_HOME
        assert second == first and cached(p) == first
        assert json.loads(cache_file().read_text())["servers"][f"{server.url} local-model"][
            "json_schema"
        ] == ("rejected")
        assert cached(p, max_age=0.0) is None  # a stale entry is probed again
        offline = await capabilities(p.model_copy(update={"model": "other"}), offline=True)
        assert offline.json_schema == "enforced" and offline.offline
        assert server.stats()["requests"] == after_first


async def test_an_unreachable_server_is_said_and_not_cached() -> None:
    with OpenAIServer() as server:
        url = server.url
    caps = await capabilities(profile(url, timeout=1.0))
    assert not caps.reachable and "refused" in caps.error
    assert cached(profile(url)) is None


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        ({}, "json_schema"),
        ({"json_schema_mode": "reject"}, "json_object"),
        ({"json_schema_mode": "ignore"}, "json_object"),
    ],
    ids=["enforce", "reject", "ignore"],
)
async def test_auto_uses_what_the_probe_found_and_answers_validate(config: dict[str, Any], mode: str) -> None:
    seen: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> None:
        seen.append(body)

    with OpenAIServer(ServerConfig(**config, json_object_follows_prompt=True, responder=record)) as server:
        p = profile(server.url)
        await capabilities(p)
        seen.clear()
        async with ChatClient() as client:
            assert client.structured_mode(p) == mode
            results = [
                await client.complete([{"role": "user", "content": f"q{i}"}], profile=p, schema=Verdict)
                for i in range(3)
            ]
    assert all(isinstance(r.parsed, Verdict) for r in results)
    assert len(seen) == 3  # no rejected or re-asked request on the way
    assert {body["response_format"]["type"] for body in seen} == {mode}
    if mode == "json_object":  # the schema is in the messages the server reads
        assert all('"score"' in body["messages"][-1]["content"] for body in seen)


async def test_auto_without_a_probe_falls_back_once_when_json_schema_is_rejected() -> None:
    with OpenAIServer(ServerConfig(json_schema_mode="reject", json_object_follows_prompt=True)) as server:
        async with ChatClient() as client:
            p = profile(server.url)
            for i in range(3):
                result = await client.complete(
                    [{"role": "user", "content": f"q{i}"}], profile=p, schema=Verdict
                )
                assert isinstance(result.parsed, Verdict)
        assert server.stats()["status"]["500"] == 1  # rejected once, never retried
        assert server.stats()["requests"] == 4


@pytest.mark.parametrize("shape", ["openai", "vllm", "ollama", "detail", "text"])
async def test_explicit_json_schema_on_a_rejecting_server_fails_fast_in_the_servers_words(shape: str) -> None:
    config = ServerConfig(json_schema_mode="reject", error_body_shape=shape)
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            with pytest.raises(ProviderError) as info:
                await client.complete(
                    MESSAGES, profile=profile(server.url, structured_output="json_schema"), schema=Verdict
                )
        assert server.stats()["requests"] == 1  # not 8 retries of a 500
    error = info.value
    assert error.field == "models.assistant.structured_output" and error.exit_code == 2
    assert "json_object" in (error.hint or "")
    assert "Input should be 'text' or 'json_object'" in str(error)
    assert LLAMA_CPP_PYTHON_REJECTION.split("\n")[0] in str(error)


@pytest.mark.parametrize("shape", ["openai", "vllm", "ollama", "detail", "text"])
async def test_transient_errors_keep_the_servers_words_in_every_body_shape(shape: str) -> None:
    config = ServerConfig(fault_sequence=["500", "500"], error_body_shape=shape)
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            with pytest.raises(CompletionFailed) as info:
                await client.complete(MESSAGES, profile=profile(server.url, max_attempts=2))
    assert "The server had an error while processing your request." in str(info.value)
    assert info.value.reason == "http_500"


async def test_litellms_retry_after_header_is_honoured() -> None:
    config = ServerConfig(
        fault_sequence=["429"], retry_after=0.8, retry_after_header="llm_provider-retry-after"
    )
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            started = time.monotonic()
            result = await client.complete(MESSAGES, profile=profile(server.url))
            waited = time.monotonic() - started
        assert server.stats()["requests"] == 2
    assert result.content
    assert waited >= 0.8  # the default backoff of a first retry is at most 0.5 s


async def test_ollamas_queue_full_503_is_retried() -> None:
    config = ServerConfig(fault_sequence=["503", "503"], queue_full_503=True, error_body_shape="ollama")
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            result = await client.complete(MESSAGES, profile=profile(server.url))
        assert server.stats()["requests"] == 3
    assert result.content


async def test_reasoning_that_eats_the_budget_is_enlarged_then_answers() -> None:
    config = ServerConfig(reasoning_field="reasoning", reasoning_tokens=100)
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            result = await client.complete(
                MESSAGES, profile=profile(server.url, max_tokens=60), schema=Verdict
            )
        assert server.stats()["requests"] == 2  # 60 tokens: all thinking, no answer; then 120
    assert isinstance(result.parsed, Verdict)
    assert result.usage.reasoning_tokens == 100
    assert client.meter.total().reasoning_tokens == 60 + 100  # both paid attempts counted


async def test_reasoning_that_never_fits_fails_naming_the_limit_to_raise() -> None:
    config = ServerConfig(reasoning_field="reasoning_content", reasoning_tokens=500)
    with OpenAIServer(config) as server:
        async with ChatClient() as client:
            with pytest.raises(CompletionFailed) as info:
                await client.complete(MESSAGES, profile=profile(server.url, max_tokens=50), schema=Verdict)
    assert info.value.reason == "length"
    message = str(info.value)
    assert "thinking" in message
    assert "max_tokens=200" in message and "raise models.assistant.max_tokens" in message


async def test_a_cut_answer_names_the_profile_and_the_limit() -> None:
    with OpenAIServer() as server:
        async with ChatClient() as client:
            with pytest.raises(CompletionFailed) as info:
                await client.complete(
                    MESSAGES, profile=profile(server.url, name="judge", max_tokens=1), call="judge"
                )
    assert (
        "models.judge (judge call): the answer was cut at max_tokens=4; raise models.judge.max_tokens"
        in str(info.value)
    )


async def test_max_tokens_goes_out_where_the_server_ignores_max_completion_tokens() -> None:
    seen: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> None:
        seen.append(body)

    with OpenAIServer(ServerConfig(ignore_max_completion_tokens=True, responder=record)) as server:
        p = profile(server.url, max_completion_tokens=300)
        assert (await capabilities(p)).token_parameter == "max_tokens"
        seen.clear()
        async with ChatClient() as client:
            await client.complete(MESSAGES, profile=p)
    assert seen[0]["max_tokens"] == 300 and "max_completion_tokens" not in seen[0]


async def test_a_reask_states_the_schema_again() -> None:
    seen: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> None:
        seen.append(body)

    with OpenAIServer(ServerConfig(json_schema_mode="ignore", responder=record)) as server:
        async with ChatClient() as client:
            with pytest.raises(CompletionFailed):
                await client.complete(
                    MESSAGES,
                    profile=profile(server.url, structured_output="json_schema", max_reasks=1),
                    schema=Verdict,
                )
    reask = seen[1]["messages"][-1]
    assert reask["role"] == "user" and "did not validate" in reask["content"]
    assert '"score"' in reask["content"] and '"label"' in reask["content"]
