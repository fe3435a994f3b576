"""429s against a real server: scattered ones retry alone, a real limit is held and paused on once.

The server runs in its own process (``spawn_server``) so that its clock, which enforces the limit,
is not slowed by the client's event loop. Runs are small (a few seconds each): the box is shared.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from synthgen.errors import ProviderError
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from tests.servers.openai_server import OpenAIServer, ServerConfig, spawn_server


def profile(url: str, **kw: Any) -> ModelProfile:
    base: dict[str, Any] = {
        "name": "judge",
        "model": "gpt-4o-2024-08-06",
        "base_url": url,
        "api_key_env": "TEST_KEY",
        "timeout": 10.0,
        "max_concurrency": 32,
    }
    return ModelProfile(**{**base, **kw})


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test-secret-123")


async def run(url: str, n: int, tag: str, **kw: Any) -> tuple[float, ChatClient]:
    """``n`` distinct requests through one client; (wall seconds, the client)."""
    p = profile(url, **kw)
    async with ChatClient() as client:
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(client.complete([{"role": "user", "content": f"{tag} {i}"}], profile=p) for i in range(n))
        )
        wall = time.monotonic() - t0
    assert len(results) == n and all(r.content for r in results)
    return wall, client


async def test_scattered_429s_do_not_serialise_the_run() -> None:
    # 5% 429 (retry-after 0.5 s, with remaining 0 as the loopback's injected 429s carry it) + 5% 500,
    # scripted one of each per 20 arrivals so that no request draws two in a row by chance
    latency, retry_after, n = 0.2, 0.5, 200
    block = ["ok"] * 9 + ["500"] + ["ok"] * 9 + ["429"]
    faulty = ServerConfig(latency=latency, fault_sequence=block * 10, retry_after=retry_after)
    with spawn_server(ServerConfig(latency=latency)) as server:
        clean_wall, _ = await run(server.url, n, "clean")
    with spawn_server(faulty) as server:
        wall, client = await run(server.url, n, "faulty")
        stats = server.stats()
    limiter = client.limiter(profile(server.url))
    refused = stats["status"].get("429", 0)
    assert refused == 10 and limiter.rate_limited == refused  # the 429s happened, each one seen
    assert limiter.pauses == 0  # none of them paused the key
    assert stats["unique_ok"] == n and stats["duplicates"] == 0  # nothing lost, nothing paid twice
    # a refused request costs its own retry-after (+25% jitter) and one more latency; a 500 backs off
    # at most 0.5 s; 30% for a shared box's noise. Pausing the key per 429 (the old behaviour) added
    # 0.5 s per 429: 5 s here.
    assert wall <= 1.3 * clean_wall + retry_after * 1.25 + latency + 0.5, (wall, clean_wall)


async def test_an_enforced_limit_is_learned_and_held_with_almost_no_429s() -> None:
    # 1200/min enforced as 20 in any 1 s; the client is told nothing and learns it from the headers
    n, per_second = 100, 20
    with spawn_server(ServerConfig(latency=0.1, rpm_limit=1200, rpm_window=1.0)) as server:
        wall, _ = await run(server.url, n, "paced")
        stats = server.stats()
    assert stats["rate_limited"] <= n // 100  # <= 1%
    assert stats["unique_ok"] == n  # none lost
    assert wall >= (n - 1) / per_second * 0.98  # held ...
    assert n / wall >= 0.85 * per_second  # ... and used: one probe latency, then 98% of the limit


async def test_a_limit_set_too_high_is_paused_on_once_then_held_at_the_accounts() -> None:
    # the profile claims 6000/min but the account has 600 (10 in any 1 s), and answers say so after
    # 0.3 s: by then the requests sent at 100/s draw a burst of 429s
    n = 40
    with spawn_server(ServerConfig(latency=0.3, rpm_limit=600, rpm_window=1.0)) as server:
        wall, client = await run(server.url, n, "over", requests_per_minute=6000, max_attempts=20)
        stats = server.stats()
    limiter = client.limiter(profile(server.url))
    assert stats["unique_ok"] == n  # none lost
    assert stats["rate_limited"] >= 3 and limiter.rate_limited == stats["rate_limited"]
    assert limiter.pauses == 1  # one pause for the burst, not one per 429
    assert limiter.known_rpm == 600  # then the account's limit, announced on answers, is held
    assert stats["rate_limited"] <= 6
    assert wall >= (n - 1) / 10 * 0.9


async def test_out_of_quota_stops_at_once_instead_of_retrying() -> None:
    def responder(request: dict[str, Any]) -> dict[str, Any]:
        body = {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        }
        return {"status": 429, "body": body, "headers": {"retry-after": "1"}}

    with OpenAIServer(ServerConfig(responder=responder)) as server:
        async with ChatClient() as client:
            with pytest.raises(ProviderError) as info:
                await client.complete([{"role": "user", "content": "hi"}], profile=profile(server.url))
        assert server.stats()["requests"] == 1
    assert info.value.field == "models.judge.api_key_env"
    assert "billing" in (info.value.hint or "")
