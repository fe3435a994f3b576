"""Self-test of the loopback OpenAI server, driven by the real ``openai.AsyncOpenAI`` SDK.

Why: other tests trust this server to tell them how their client behaved (retries, rate limits,
structured outputs, in-flight requests); if the server lied, those tests would pass for nothing.
"""

from __future__ import annotations

import asyncio
import enum
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
from pydantic import BaseModel, Field

from tests.servers.openai_server import (
    ALL_FAULTS,
    OpenAIServer,
    ServerConfig,
    format_reset,
    generate_instance,
    parse_reset,
    spawn_server,
    validate_instance,
)

MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [{"role": "user", "content": "Write one order."}]


class Color(enum.StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


class Item(BaseModel):
    name: str
    qty: int
    tags: list[str]


class Order(BaseModel):
    customer: str
    color: Color
    items: list[Item] = Field(min_length=1)
    note: str | None
    rush: bool


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(ServerConfig()) as srv:
        yield srv


def client_for(srv: OpenAIServer | Any, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 5.0)
    return openai.AsyncOpenAI(base_url=srv.url, api_key=kwargs.pop("api_key", "sk-test"), **kwargs)


def wait_until(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --------------------------------------------------------------------------------------------- replies


def test_structured_parse_returns_valid_varied_instances(server: OpenAIServer) -> None:
    async def run() -> list[Any]:
        async with client_for(server) as client:
            out = []
            for sample in range(12):
                completion = await client.chat.completions.parse(
                    model=MODEL,
                    messages=MESSAGES,
                    response_format=Order,
                    extra_headers={"x-synthgen-sample": str(sample)},
                )
                out.append(completion)
            return out

    completions = asyncio.run(run())
    orders = [c.choices[0].message.parsed for c in completions]
    assert all(isinstance(o, Order) for o in orders)
    assert all(o.items and all(isinstance(i, Item) for i in o.items) for o in orders if o)
    assert len({o.customer for o in orders if o}) == 12  # strings vary with the sample header
    assert {o.note is None for o in orders if o} == {True, False}  # both optional branches occur
    first = completions[0]
    assert first.model == MODEL and first.object == "chat.completion"
    assert first.system_fingerprint == "fp_loopback" and first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.prompt_tokens == max(1, len(json.dumps(MESSAGES)) // 4)
    assert first.usage.completion_tokens == max(1, len(first.choices[0].message.content or "") // 4)
    assert first.usage.prompt_tokens_details and first.usage.prompt_tokens_details.cached_tokens == 0
    stats = server.stats()
    assert stats["served_ok"] == 12 and stats["duplicates"] == 0 and stats["status"] == {"200": 12}
    assert stats["usage"]["completion_tokens"] == sum(
        c.usage.completion_tokens for c in completions if c.usage
    )
    assert stats["usage"] == stats["usage_all"]
    assert stats["auth_headers_seen"] == ["Bearer sk-test"]


def test_plain_text_and_json_object_replies_are_deterministic(server: OpenAIServer) -> None:
    async def run() -> tuple[str, str, str, str]:
        async with client_for(server) as client:

            async def text(sample: str, **kw: Any) -> str:
                r = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, extra_headers={"x-synthgen-sample": sample}, **kw
                )
                return r.choices[0].message.content or ""

            obj = await text("a", response_format={"type": "json_object"})
            return await text("a"), await text("a"), await text("b"), obj

    a1, a2, b, obj = asyncio.run(run())
    assert a1 == a2 and a1 != b and a1.endswith(".")
    assert isinstance(json.loads(obj), dict)
    assert server.stats()["duplicates"] == 1  # the second identical "a" request


def test_generator_covers_schema_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 5, "maximum": 9},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "step": {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 30},
            "kind": {"enum": ["a", "b"]},
            "fixed": {"const": 42},
            "code": {"type": "string", "minLength": 30, "maxLength": 40},
            "short": {"type": "string", "maxLength": 3},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4,
                     "uniqueItems": True},
            "pair": {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "null"}], "items": False},
            "maybe": {"type": ["string", "null"]},
            "node": {"$ref": "#/$defs/Node"},
            "mixed": {"allOf": [{"$ref": "#/$defs/A"},
                                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
        },
        "required": ["id", "score", "step", "kind", "fixed", "code", "short", "when", "tags", "pair", "maybe",
                     "node", "mixed"],
        "additionalProperties": False,
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                               "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                "required": ["children", "parent"],
                "additionalProperties": False,
            },
            "A": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        },
    }  # fmt: skip
    values = [generate_instance(schema, seed=i) for i in range(40)]
    for value in values:
        assert validate_instance(schema, value) == [], value
    assert generate_instance(schema, seed=3) == generate_instance(schema, seed=3)
    assert len({json.dumps(v) for v in values}) == 40
    assert validate_instance(schema, {**values[0], "id": 10}) != []
    assert validate_instance(schema, {k: v for k, v in values[0].items() if k != "node"}) != []


# ------------------------------------------------------------------------------------------------ faults

FAULT_EXPECTATIONS: dict[str, type[BaseException] | str] = {
    "429": openai.RateLimitError,
    "408": openai.APIStatusError,
    "500": openai.InternalServerError,
    "503": openai.InternalServerError,
    "x_should_retry": openai.InternalServerError,
    "x_should_retry_400": openai.BadRequestError,
    "hang": openai.APITimeoutError,
    "malformed_json": ValueError,  # json.JSONDecodeError from the SDK's response.json()
    "schema_violation": pydantic.ValidationError,
    "invalid_json_content": pydantic.ValidationError,
    "truncated": openai.LengthFinishReasonError,
    "refusal": "refusal",
    "content_filter": openai.ContentFilterFinishReasonError,
    "disconnect": openai.APIConnectionError,
}


def test_every_fault_kind_has_an_expectation() -> None:
    assert set(FAULT_EXPECTATIONS) == set(ALL_FAULTS)


@pytest.mark.parametrize("kind", ALL_FAULTS)
def test_fault_kind_reaches_the_client(server: OpenAIServer, kind: str) -> None:
    server.update_config(fault_sequence=[kind])
    expected = FAULT_EXPECTATIONS[kind]

    async def run() -> Any:
        async with client_for(server, timeout=0.3) as client:
            return await client.chat.completions.parse(model=MODEL, messages=MESSAGES, response_format=Order)

    if expected == "refusal":
        message = asyncio.run(run()).choices[0].message
        assert message.refusal and message.content is None and message.parsed is None
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected) as info:
            asyncio.run(run())
        if kind == "408":
            assert info.value.status_code == 408  # type: ignore[attr-defined]
        if kind.startswith("x_should_retry"):
            assert info.value.response.headers["x-should-retry"] == "true"  # type: ignore[attr-defined]
        if kind in ("429", "503"):
            headers = info.value.response.headers  # type: ignore[attr-defined]
            assert headers["retry-after-ms"] == "50" and float(headers["retry-after"]) == 0.05
        if kind == "429":
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert parse_reset(headers["x-ratelimit-reset-requests"]) == pytest.approx(0.05)
    assert wait_until(lambda: server.stats()["in_flight"] == 0)
    stats = server.stats()
    assert stats["faults"] == {kind: 1}
    assert stats["served_ok"] == 0 and stats["usage"]["total_tokens"] == 0
    if kind in ("schema_violation", "invalid_json_content", "truncated", "refusal", "content_filter"):
        assert stats["status"] == {"200": 1} and stats["usage_all"]["total_tokens"] > 0


def test_sdk_retries_transient_faults_then_succeeds(server: OpenAIServer) -> None:
    # x_should_retry_400 first: without retry-after the SDK backs off 0.5 s, doubling per retry;
    # 429/503 announce retry-after-ms=50, which the SDK honours.
    server.update_config(fault_sequence=["x_should_retry_400", "429", "503", "ok"])

    async def run() -> str:
        async with client_for(server, max_retries=4) as client:
            r = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            return r.choices[0].message.content or ""

    started = time.monotonic()
    assert asyncio.run(run())
    assert time.monotonic() - started < 2.0
    stats = server.stats()
    assert stats["requests"] == 4 and stats["served_ok"] == 1
    assert stats["status"] == {"429": 1, "503": 1, "400": 1, "200": 1}


def test_fault_rate_is_reproducible_per_seed(server: OpenAIServer) -> None:
    server.update_config(fault_rate=0.5, faults=("500", "408"), seed=7)

    async def pattern() -> list[str]:
        out = []
        async with client_for(server) as client:
            for _ in range(30):
                try:
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                    out.append("ok")
                except openai.APIStatusError as exc:
                    out.append(str(exc.status_code))
        return out

    first = asyncio.run(pattern())
    server.reset()
    assert asyncio.run(pattern()) == first
    assert 5 < first.count("ok") < 25 and {"500", "408"} <= set(first)
    stats = server.stats()
    assert sum(stats["faults"].values()) == 30 - first.count("ok") and stats["served_ok"] == first.count("ok")


def test_responder_scripts_replies(server: OpenAIServer) -> None:
    calls: list[dict[str, Any]] = []

    def responder(request: dict[str, Any]) -> str | dict[str, Any] | None:
        calls.append(request)
        text = request["messages"][-1]["content"]
        if text == "plain":
            return "scripted answer"
        if text == "json":
            return {"content": {"customer": "x", "color": "red", "items": [], "note": None, "rush": True}}
        if text == "cut":
            return {"content": '{"customer": "x"', "finish_reason": "length"}
        if text == "bad":
            return {"status": 400, "body": {"error": {"message": "nope", "type": "invalid_request_error"}}}
        if text == "hangup":
            return {"fault": "disconnect"}
        return None

    server.update_config(responder=responder)

    async def run() -> None:
        async with client_for(server) as client:

            def msgs(text: str) -> Any:
                return [{"role": "user", "content": text}]

            r = await client.chat.completions.create(model=MODEL, messages=msgs("plain"))
            assert r.choices[0].message.content == "scripted answer"
            with pytest.raises(pydantic.ValidationError):  # items has min_length=1 in Order
                await client.chat.completions.parse(model=MODEL, messages=msgs("json"), response_format=Order)
            with pytest.raises(openai.LengthFinishReasonError):
                await client.chat.completions.parse(model=MODEL, messages=msgs("cut"), response_format=Order)
            with pytest.raises(openai.BadRequestError, match="nope"):
                await client.chat.completions.create(model=MODEL, messages=msgs("bad"))
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(model=MODEL, messages=msgs("hangup"))
            r = await client.chat.completions.parse(
                model=MODEL, messages=msgs("default"), response_format=Order
            )
            assert isinstance(r.choices[0].message.parsed, Order)

    asyncio.run(run())
    assert len(calls) == 6
    stats = server.stats()
    # valid: "plain" and "default"; "json" is 200 but violates the schema (minItems) so is not ok
    assert (
        stats["served_ok"] == 2 and stats["faults"] == {"disconnect": 1} and stats["client_disconnects"] == 0
    )


# ------------------------------------------------------------------------------------- limits and stats


def test_rpm_sliding_window_is_enforced(server: OpenAIServer) -> None:
    # 10 requests per any 2 s window: a 2 s window leaves a loaded box room to send the burst in one
    server.update_config(rpm_limit=300, rpm_window=2.0)

    async def one(client: openai.AsyncOpenAI) -> tuple[int, Any]:
        try:
            raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            return 200, raw.headers
        except openai.RateLimitError as exc:
            return 429, exc.response.headers

    async def run() -> tuple[list[tuple[int, Any]], float, tuple[int, Any]]:
        async with client_for(server) as client:
            started = time.monotonic()
            results = await asyncio.gather(*(one(client) for _ in range(30)))
            elapsed = time.monotonic() - started
            wait = max(int(h["retry-after-ms"]) for s, h in results if s == 429) / 1000
            await asyncio.sleep(wait + 0.05)
            return results, elapsed, await one(client)

    results, elapsed, after = asyncio.run(run())
    ok = [h for s, h in results if s == 200]
    limited = [h for s, h in results if s == 429]
    assert elapsed < 2.0, "the burst must fit in one window for exact counts"
    assert len(ok) == 10 and len(limited) == 20
    for headers in ok + limited:
        assert headers["x-ratelimit-limit-requests"] == "300"
        assert 0 < parse_reset(headers["x-ratelimit-reset-requests"]) <= 2.0
    assert sorted(int(h["x-ratelimit-remaining-requests"]) for h in ok) == list(range(10))
    for headers in limited:
        assert 0 < int(headers["retry-after-ms"]) <= 2000 and headers["x-ratelimit-remaining-requests"] == "0"
    assert after[0] == 200  # a slot freed after retry-after-ms
    stats = server.stats()
    assert stats["rate_limited"] == 20 and stats["status"] == {"200": 11, "429": 20}
    assert stats["window_s"] == 2.0 and stats["max_in_window"] == 30 and stats["max_in_60s"] == 31


def test_tpm_limit_rejects_token_bursts(server: OpenAIServer) -> None:
    prompt_tokens = max(1, len(json.dumps(MESSAGES)) // 4)
    server.update_config(tpm_limit=(prompt_tokens + 10) * 3 * 60, rpm_window=1.0)  # 3 requests' worth

    async def run() -> list[int]:
        async with client_for(server) as client:

            async def one() -> int:
                try:
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10)
                    return 200
                except openai.RateLimitError as exc:
                    assert "x-ratelimit-remaining-tokens" in exc.response.headers
                    return 429

            return list(await asyncio.gather(*(one() for _ in range(6))))

    assert sorted(asyncio.run(run())) == [200] * 3 + [429] * 3


def test_peak_in_flight_counts_concurrent_requests(server: OpenAIServer) -> None:
    server.update_config(latency=0.2)

    async def run() -> float:
        async with client_for(server) as client:
            started = time.monotonic()
            await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=MODEL, messages=MESSAGES, extra_headers={"x-synthgen-sample": str(i)}
                    )
                    for i in range(20)
                )
            )
            return time.monotonic() - started

    elapsed = asyncio.run(run())
    assert elapsed < 1.5  # served concurrently, not 20 x 0.2 s
    stats = server.stats()
    assert stats["peak_in_flight"] == 20 and stats["in_flight"] == 0
    assert stats["served_ok"] == 20 and stats["duplicates"] == 0 and stats["unique_ok"] == 20


def test_client_timeout_drops_in_flight(server: OpenAIServer) -> None:
    server.update_config(fault_sequence=["hang", "ok"], latency=0.0)

    async def run() -> None:
        async with client_for(server, timeout=0.3) as client:
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            server.update_config(latency=5.0)  # a slow request the client also abandons
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    started = time.monotonic()
    asyncio.run(run())
    assert wait_until(lambda: server.stats()["in_flight"] == 0, timeout=1.0)
    assert time.monotonic() - started < 2.0
    stats = server.stats()
    assert stats["client_disconnects"] == 2 and stats["faults"] == {"hang": 1} and stats["status"] == {}


def test_duplicates_and_auth_headers(server: OpenAIServer) -> None:
    async def run() -> None:
        for key in ("sk-a", "sk-b"):
            async with client_for(server, api_key=key) as client:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        async with client_for(server, api_key="sk-a") as client:
            await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, extra_headers={"x-synthgen-sample": "other"}
            )

    asyncio.run(run())
    stats = server.stats()
    assert stats["served_ok"] == 3 and stats["duplicates"] == 1 and stats["unique_ok"] == 2
    assert stats["auth_headers_seen"] == ["Bearer sk-a", "Bearer sk-b"]
    server.reset()
    assert server.stats()["requests"] == 0 and server.stats()["auth_headers_seen"] == []


def test_api_key_and_unknown_paths() -> None:
    with OpenAIServer(ServerConfig(api_key="sk-right")) as srv:

        async def run() -> None:
            async with client_for(srv, api_key="sk-wrong-key-123") as client:
                with pytest.raises(openai.AuthenticationError) as info:
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                assert info.value.code == "invalid_api_key"
            async with client_for(srv, api_key="sk-right") as client:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                with pytest.raises(openai.BadRequestError):
                    await client.chat.completions.create(model=MODEL, messages=[])

        asyncio.run(run())
        assert srv.stats()["status"] == {"401": 1, "200": 1, "400": 1}
        status, body = http("POST", srv.url + "/nope", {})
        assert status == 404 and body["error"]["code"] == "unknown_url" and "message" in body["error"]
        status, body = http("POST", srv.base_url + "/_config", {"no_such_field": 1})
        assert status == 400 and "no_such_field" in body["error"]["message"]


def test_echo_auth_quotes_the_key_in_error_bodies_only_when_asked() -> None:
    """The leak tests trust this: with ``echo_auth`` every 400/401/429/500 body carries the header."""
    scripted = {
        "status": 400,
        "body": {"error": {"message": "context too long", "code": "context_length_exceeded"}},
    }
    replies = iter([scripted, None, None, None, None])

    def responder(request: dict[str, Any]) -> dict[str, Any] | None:
        return next(replies)

    config = ServerConfig(echo_auth=True, responder=responder, fault_sequence=["ok", "429", "500", "ok"])
    with OpenAIServer(config) as srv:

        async def run(key: str) -> list[Any]:
            out: list[Any] = []
            async with client_for(srv, api_key=key) as client:
                for _ in range(4):
                    try:
                        out.append(await client.chat.completions.create(model=MODEL, messages=MESSAGES))
                    except openai.APIStatusError as exc:
                        out.append(exc)
            return out

        seen = asyncio.run(run("sk-echo-me-0123456789"))
        assert [getattr(r, "status_code", 200) for r in seen] == [400, 429, 500, 200]
        for exc in seen[:3]:
            assert "Bearer sk-echo-me-0123456789" in exc.message
            assert exc.body["request_headers"] == {"Authorization": "Bearer sk-echo-me-0123456789"}
            assert exc.code is not None or exc.status_code == 500
        srv.update_config(api_key="sk-right")
        denied = asyncio.run(run("sk-wrong-0123456789"))[0]
        assert isinstance(denied, openai.AuthenticationError)
        assert "Bearer sk-wrong-0123456789" in denied.message
        srv.update_config(api_key=None, echo_auth=False, fault_sequence=["500"])
        plain = asyncio.run(run("sk-echo-me-0123456789"))[0]
        assert isinstance(plain, openai.InternalServerError) and "sk-echo" not in plain.message
        assert "request_headers" not in plain.body


def test_stop_is_bounded_with_a_hung_request() -> None:
    srv = OpenAIServer(ServerConfig(fault_sequence=["hang"])).start()
    errors: list[BaseException] = []

    def call() -> None:
        async def run() -> None:
            async with client_for(srv, timeout=30.0) as client:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)

        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    assert wait_until(lambda: srv.stats()["in_flight"] == 1)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3.0
    thread.join(5.0)
    assert not thread.is_alive() and errors  # the client saw an error (504 or a closed connection)


def test_reset_duration_format() -> None:
    assert format_reset(0.02) == "20ms" and format_reset(1.0) == "1s" and format_reset(360) == "6m0s"
    assert format_reset(1.5) == "1.5s" and format_reset(3725) == "1h2m5s"
    for text in ("20ms", "1s", "6m0s", "1.5s", "1h2m5s"):
        assert format_reset(parse_reset(text)) == text


# -------------------------------------------------------------------------------------------- subprocess


def test_spawned_server_in_subprocess() -> None:
    with spawn_server(ServerConfig(latency=0.01, seed=3)) as srv:
        assert srv.url.startswith("http://127.0.0.1:") and srv.url.endswith("/v1")

        async def run() -> None:
            async with client_for(srv) as client:
                r = await client.chat.completions.parse(model=MODEL, messages=MESSAGES, response_format=Order)
                assert isinstance(r.choices[0].message.parsed, Order)
                srv.update_config(fault_sequence=["500"])
                with pytest.raises(openai.InternalServerError):
                    await client.chat.completions.create(model=MODEL, messages=MESSAGES)

        asyncio.run(run())
        stats = srv.stats()
        assert stats["requests"] == 2 and stats["served_ok"] == 1 and stats["faults"] == {"500": 1}
        assert srv.get_config()["latency"] == 0.01
        srv.reset()
        assert srv.stats()["requests"] == 0
        process = srv.process
    assert process.poll() is not None  # the child is gone once the context exits


def test_cli_prints_ready_line() -> None:
    cli = ["-m", "tests.servers.openai_server", "--port", "0", "--latency", "0.5", "--exit-on-stdin-eof"]
    proc = subprocess.Popen(
        [sys.executable, *cli],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1")
        status, config = http("GET", line.removeprefix("READY ").removesuffix("/v1") + "/_config")
        assert status == 200 and config["latency"] == 0.5
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0
        if proc.stdout is not None:
            proc.stdout.close()
