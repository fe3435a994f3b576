"""A request that cannot reach its endpoint says which URL and profile failed, and how (refused, DNS, timeout)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from synthgen.errors import CompletionFailed
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile

Backend = Literal["aiohttp", "httpx"]
BACKENDS: list[Backend] = ["aiohttp", "httpx"]
MESSAGES = [{"role": "user", "content": "hola"}]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test-secret-123")


def profile(url: str, backend: Backend, **kw: Any) -> ModelProfile:
    return ModelProfile(
        name="assistant",
        model="gpt-4o-2024-08-06",
        base_url=url,
        api_key_env="TEST_KEY",
        http_backend=backend,
        max_attempts=2,
        **{"timeout": 2.0, **kw},
    )


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers: reads time out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def fail(p: ModelProfile) -> CompletionFailed:
    async with ChatClient() as client:
        with pytest.raises(CompletionFailed) as info:
            await client.complete(MESSAGES, profile=p)
    return info.value


@pytest.mark.parametrize("backend", BACKENDS)
async def test_refused_connection_names_url_profile_and_refusal(
    backend: Backend, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    caplog.set_level(logging.WARNING, logger="synthgen")
    error = await fail(profile(url, backend))
    for text in (str(error), error.message):
        assert url in text and "'assistant'" in text, text
        assert "refused" in text and "timed out" not in text.lower(), text
    assert error.reason == "connection"  # not "timeout": aiohttp's mapping calls a refusal a ConnectTimeout
    assert error.attempts == 2  # still retried: a server restarting refuses for a moment
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and url in warned[0] and "refused" in warned[0], warned


@pytest.mark.parametrize("backend", BACKENDS)
async def test_dns_failure_names_the_host(backend: Backend) -> None:
    url = "http://no-such-host.invalid:8000/v1"
    error = await fail(profile(url, backend))
    assert url in str(error) and "'assistant'" in str(error)
    assert "DNS" in str(error) and "no-such-host.invalid" in str(error), str(error)
    assert error.reason == "connection"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_timeout_says_timeout_and_the_limit(backend: Backend, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/v1"
    started = time.monotonic()
    error = await fail(profile(url, backend, timeout=0.3))
    assert time.monotonic() - started < 10
    assert url in str(error) and "'assistant'" in str(error)
    assert "timed out" in str(error) and "0.3 s" in str(error) and "refused" not in str(error), str(error)
    assert error.reason == "timeout"
