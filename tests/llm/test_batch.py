"""The Batch API path of the client against the loopback batch server: waves, expiry, failure, prices."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pydantic
import pytest

from synthgen.errors import CompletionFailed
from synthgen.llm.batch import BatchCollector, BatchJournal, batch_price_quote, read_batches
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.llm.usage import cost_usd, price_for
from tests.servers.batch_server import BatchConfig, BatchServer
from tests.servers.openai_server import ServerConfig


class Answer(pydantic.BaseModel):
    text: str


def profile(url: str, **fields: Any) -> ModelProfile:
    settings: dict[str, Any] = {"batch": True, "max_tokens": 64, **fields}
    return ModelProfile(name="teacher", model="gpt-4o-mini-2024-07-18", base_url=url, **settings)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    monkeypatch.setenv("SYNTHGEN_BATCH_POLL_SECONDS", "0.05")


async def ask_all(client: ChatClient, p: ModelProfile, n: int, **kw: Any) -> list[Any]:
    calls = [
        client.complete([{"role": "user", "content": f"question {i}"}], profile=p, **kw) for i in range(n)
    ]
    return await asyncio.gather(*calls, return_exceptions=True)


def collector(tmp_path: Path) -> BatchCollector:
    return BatchCollector(BatchJournal(tmp_path / "batches.jsonl"), settle=0.1, poll=0.02)


async def test_requests_of_all_callers_go_out_as_one_wave_answered_like_online(
    key: None, tmp_path: Path
) -> None:
    with BatchServer(ServerConfig(seed=1)) as server:
        p = profile(server.url)
        async with ChatClient(batches=collector(tmp_path)) as client:
            answers = await ask_all(client, p, 12, schema=Answer)
        online = p.model_copy(update={"batch": False})
        async with ChatClient() as client:
            direct = await ask_all(client, online, 12, schema=Answer)
        stats = server.batch_stats()
    assert stats["created"] == 1 and stats["lines"] == 12
    assert all(a.parsed.text for a in answers)
    # the same body answered through a batch line and through a plain request (loopback content
    # hashes the body bytes, whose key order the SDK and the batch line may set differently)
    assert [a.usage.prompt_tokens for a in answers] == [d.usage.prompt_tokens for d in direct]
    journal = read_batches(tmp_path / "batches.jsonl")
    (record,) = journal.values()
    assert record.status == "completed" and record.requests == 12 and record.answered == 12


async def test_an_expired_batch_resubmits_only_its_unanswered_requests(key: None, tmp_path: Path) -> None:
    with BatchServer(ServerConfig(), BatchConfig(outcomes=["expired:4"])) as server:
        async with ChatClient(batches=collector(tmp_path)) as client:
            answers = await ask_all(client, profile(server.url), 10)
            meter = client.meter.snapshot()
        stats = server.batch_stats()
    assert not [a for a in answers if isinstance(a, BaseException)]
    first, second = stats["batches"]
    assert first["outcome"] == "expired:4" and len(first["custom_ids"]) == 10
    answered = set(first["custom_ids"][:4])  # the loopback answers the first N lines before expiring
    assert set(second["custom_ids"]) == set(first["custom_ids"]) - answered
    assert stats["answered"] == 10  # 4 kept + 6 answered by the second wave, none paid twice
    assert meter["total"]["requests"] == 10
    records = list(read_batches(tmp_path / "batches.jsonl").values())
    assert [(r.status, r.answered, r.resubmitted) for r in records] == [
        ("expired", 4, 6),
        ("completed", 6, 0),
    ]


async def test_a_failed_batch_is_resubmitted_then_gives_up_with_the_reason(key: None, tmp_path: Path) -> None:
    with BatchServer(ServerConfig(), BatchConfig(outcomes=["failed", "completed"])) as server:
        async with ChatClient(batches=collector(tmp_path)) as client:
            answers = await ask_all(client, profile(server.url), 3)
    assert all(not isinstance(a, BaseException) for a in answers)
    with BatchServer(ServerConfig(), BatchConfig(outcomes=["failed"] * 5)) as server:
        async with ChatClient(batches=collector(tmp_path / "again")) as client:
            (failure,) = await ask_all(client, profile(server.url), 1)
        assert server.batch_stats()["created"] == 4  # the first wave and three resubmissions
    assert isinstance(failure, CompletionFailed)
    assert failure.reason == "batch_failed" and "failed (scripted)" in str(failure)


async def test_an_invalid_answer_is_reasked_in_the_next_wave(key: None, tmp_path: Path) -> None:
    seen: list[str] = []

    def first_invalid(body: dict[str, Any]) -> str:
        seen.append(body["messages"][-1]["content"])
        return "not json" if len(seen) == 1 else json.dumps({"text": "fine"})

    with BatchServer(ServerConfig(responder=first_invalid)) as server:
        async with ChatClient(batches=collector(tmp_path)) as client:
            (answer,) = await ask_all(client, profile(server.url), 1, schema=Answer)
        stats = server.batch_stats()
    assert answer.parsed.text == "fine" and answer.attempts == 2
    assert stats["created"] == 2
    key = stats["batches"][0]["custom_ids"][0]
    assert stats["batches"][1]["custom_ids"] == [f"{key}.1"]  # a re-ask is a request of its own


async def test_batched_calls_are_priced_at_the_batch_rate(key: None, tmp_path: Path) -> None:
    model = "gpt-4o-mini-2024-07-18"
    prices, source = batch_price_quote(model)
    online = price_for(model)
    assert prices is not None and online is not None
    assert prices.input == pytest.approx(online.input / 2) and prices.output == pytest.approx(
        online.output / 2
    )
    assert "batch" in source
    with BatchServer(ServerConfig()) as server:
        async with ChatClient(batches=collector(tmp_path)) as client:
            await ask_all(client, profile(server.url), 4)
            batched = client.meter.total()
    assert batched.requests == 4 and batched.completion_tokens > 0
    assert batched.cost_usd == pytest.approx(cost_usd(batched, online) / 2)


async def test_a_batch_cancelled_elsewhere_has_its_requests_resubmitted(key: None, tmp_path: Path) -> None:
    with BatchServer(ServerConfig(), BatchConfig(outcomes=["hold"])) as server:
        async with ChatClient(batches=collector(tmp_path)) as client:
            asking = asyncio.ensure_future(ask_all(client, profile(server.url), 5))
            for _ in range(500):  # the wave goes out once the five requests settle
                if server.batch_stats()["created"]:
                    break
                await asyncio.sleep(0.02)
            (held,) = server.batch_stats()["states"]
            cancelled = await client._client(profile(server.url)).batches.cancel(
                held
            )  # e.g. in the dashboard
            assert cancelled.status == "cancelling"
            answers = await asking
        stats = server.batch_stats()
    assert all(not isinstance(a, BaseException) for a in answers)
    assert stats["states"][held] == "cancelled" and stats["created"] == 2
    assert sorted(stats["batches"][1]["custom_ids"]) == sorted(stats["batches"][0]["custom_ids"])


async def test_a_rerun_reads_a_journaled_batch_again_and_rebuys_only_a_vanished_output(
    key: None, tmp_path: Path
) -> None:
    with BatchServer(ServerConfig()) as server:
        p = profile(server.url)
        async with ChatClient(batches=collector(tmp_path)) as client:
            first = await ask_all(client, p, 3)
        # a re-run (no response cache here): the journal places every request in batch 1
        resumed = collector(tmp_path)
        async with ChatClient(batches=resumed) as client:
            again = await ask_all(client, p, 3)
        assert server.batch_stats()["created"] == 1 and resumed.stats.attached == 3
        assert [a.content for a in again] == [a.content for a in first]
        # OpenAI deletes output files after a while: their answers must be bought again, once
        (output,) = [
            f for f, stored in server._core.files.items() if stored["meta"]["filename"] == "output.jsonl"
        ]
        del server._core.files[output]
        async with ChatClient(batches=collector(tmp_path)) as client:
            bought = await ask_all(client, p, 3)
        stats = server.batch_stats()
    assert [a.content for a in bought] == [a.content for a in first]
    assert stats["created"] == 2 and sorted(stats["batches"][1]["custom_ids"]) == sorted(
        stats["batches"][0]["custom_ids"]
    )


def test_a_batch_profile_refuses_a_list_of_servers() -> None:
    with pytest.raises(pydantic.ValidationError, match="one base_url"):
        ModelProfile(model="gpt-4o-mini", base_url=["http://a:8000/v1", "http://b:8000/v1"], batch=True)
