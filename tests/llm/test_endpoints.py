"""A profile listing several servers of one model (a self-hosted teacher on several GPUs), against three
loopback servers: the load spreads by least in-flight, a server that dies mid-run leaves the rotation
without losing a request and comes back once it answers, each server has its own limits, and the cache
key does not depend on which server answered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import synthgen
from synthgen.cli import main
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient, Completion
from synthgen.llm.endpoints import FIRST_COOLDOWN
from synthgen.llm.offline import offline_reply
from synthgen.llm.profile import ModelProfile
from synthgen.recipe import load_recipe
from tests.conftest import REPO
from tests.servers.openai_server import OpenAIServer, ServerConfig

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"
LATENCY = 0.03  # per request: long enough that 12 workers keep every server busy
WORKERS = 12  # closed loop, as the runner's items are: each awaits its answer before the next request
PER_PHASE = 150


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test-secret-123")


def pool_profile(urls: list[str], **kw: Any) -> ModelProfile:
    base: dict[str, Any] = {
        "name": "teacher",
        "model": "qwen2.5-7b-instruct",
        "base_url": urls,
        "api_key_env": "TEST_KEY",
        "timeout": 5.0,
        "max_concurrency": 4,  # per server
    }
    return ModelProfile(**{**base, **kw})


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Pregunta número {i}"}]


async def phase(client: ChatClient, profile: ModelProfile, start: int, n: int) -> dict[int, Completion]:
    """``n`` requests by ``WORKERS`` closed-loop workers; every one must end with an answer."""
    todo = iter(range(start, start + n))
    done: dict[int, Completion] = {}

    async def worker() -> None:
        for i in todo:
            done[i] = await client.complete(messages(i), profile=profile)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    assert sorted(done) == list(range(start, start + n))  # every item accounted for
    return done


def served(servers: list[OpenAIServer]) -> list[int]:
    return [int(s.stats()["served_ok"]) for s in servers]


def within_20_percent(counts: list[int]) -> bool:
    mean = sum(counts) / len(counts)
    return all(abs(c - mean) <= 0.2 * mean for c in counts)


async def test_three_servers_one_dies_mid_run_and_comes_back() -> None:
    servers = [OpenAIServer(ServerConfig(latency=LATENCY)).start() for _ in range(3)]
    dying = servers[1]
    port = dying.port
    profile = pool_profile([s.url for s in servers])
    try:
        async with ChatClient() as client:
            # 1. all three live: the load spreads evenly
            await phase(client, profile, 0, PER_PHASE)
            first = served(servers)
            assert sum(first) == PER_PHASE and within_20_percent(first), first

            # 2. one dies while requests are in flight on it and queued for it
            run = asyncio.create_task(phase(client, profile, PER_PHASE, PER_PHASE))
            while served(servers)[1] < first[1] + 10:  # noqa: ASYNC110 - polls another thread's counter
                await asyncio.sleep(0.005)
            await asyncio.to_thread(dying.stop)
            second = await run  # no request lost: each one answered, by a live server
            pool = client.pool(profile)
            assert pool is not None
            down = pool.stats()[dying.url]
            assert down["times_out"] == 1 and not down["in_rotation"]
            survivors = [served(servers)[i] - first[i] for i in (0, 2)]
            assert within_20_percent(survivors), survivors
            assert sum(survivors) > PER_PHASE / 2  # they took over the dead one's share
            assert len({c.content for c in second.values()}) == PER_PHASE

            # 3. it comes back on the same address; after its cool-down one request probes it back
            back = OpenAIServer(ServerConfig(latency=LATENCY), port=port).start()
            servers[1] = back
            due = max(e.out_until for e in pool.endpoints) - time.monotonic()
            await asyncio.sleep(max(due, 0.0) + 0.05)
            before = served(servers)
            await phase(client, profile, 2 * PER_PHASE, PER_PHASE)
            third = [a - b for a, b in zip(served(servers), before, strict=True)]
            assert pool.stats()[back.url]["in_rotation"]
            assert sum(third) == PER_PHASE and within_20_percent(third), third

            # one limiter per server, none for the list as a whole
            assert {key[0] for key, _ in client.limits} == {s.url for s in servers}
    finally:
        for s in servers:
            s.stop()


async def test_a_dead_server_costs_no_backoff_while_others_answer() -> None:
    with OpenAIServer() as live:
        with OpenAIServer() as dead:
            dead_url = dead.url
        profile = pool_profile([dead_url, live.url], max_concurrency=2)
        async with ChatClient() as client:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(client.complete(messages(i), profile=profile) for i in range(20))
            )
            elapsed = time.monotonic() - started
            assert len(answers) == 20
            assert live.stats()["served_ok"] == 20
            stats = client.pool(profile).stats()  # type: ignore[union-attr]
            assert stats[dead_url]["times_out"] == 1 and stats[dead_url]["answered"] == 0
        # connection failures go straight to the live server: no exponential backoff (0.5 s, 1 s, ...)
        assert elapsed < 2.0
        assert FIRST_COOLDOWN >= 1.0  # and the dead one was not probed again within the run


async def test_a_server_answering_500s_leaves_the_rotation_after_three_in_a_row() -> None:
    with OpenAIServer() as good, OpenAIServer(ServerConfig(fault_rate=1.0, faults=("500",))) as bad:
        profile = pool_profile([bad.url, good.url], max_concurrency=1)
        async with ChatClient() as client:
            answers = [await client.complete(messages(i), profile=profile) for i in range(12)]
            stats = client.pool(profile).stats()  # type: ignore[union-attr]
        assert len(answers) == 12 and good.stats()["served_ok"] == 12  # every request answered
        assert bad.stats()["requests"] == 3  # one blip is retried; three in a row take it out
        assert stats[bad.url]["times_out"] == 1 and not stats[bad.url]["in_rotation"]


async def test_the_cache_key_does_not_depend_on_the_server_that_answered(tmp_path: Path) -> None:
    with OpenAIServer() as a, OpenAIServer() as b:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        async with ChatClient(cache=cache) as client:
            first = [
                await client.complete(messages(i), profile=pool_profile([a.url, b.url])) for i in range(6)
            ]
        assert a.stats()["served_ok"] > 0 and b.stats()["served_ok"] > 0  # both answered some
        async with ChatClient(cache=ResponseCache(tmp_path / "cache.sqlite")) as client:
            again = [
                await client.complete(messages(i), profile=pool_profile([b.url, a.url])) for i in range(6)
            ]
        assert all(c.cached for c in again)  # the same list in another order: every answer from the cache
        assert [c.content for c in again] == [c.content for c in first]
        assert a.stats()["requests"] + b.stats()["requests"] == 6


def test_a_list_keeps_single_url_keys_and_names_the_pool() -> None:
    client = ChatClient()
    one = ModelProfile(model="m", base_url="http://gpu1:8000/v1/")
    as_list = ModelProfile(model="m", base_url=["http://gpu1:8000/v1/"])
    assert as_list.base_url == "http://gpu1:8000/v1/"  # a one-entry list is that URL
    key = client.request_key(messages(0), one, None, 0, "")
    assert client.request_key(messages(0), as_list, None, 0, "") == key  # existing caches stay valid
    pool = ModelProfile(model="m", base_url=["http://gpu2:8000/v1", "http://gpu1:8000/v1/"])
    assert pool.endpoints == ("http://gpu2:8000/v1", "http://gpu1:8000/v1")
    assert pool.resolved_base_url == "http://gpu1:8000/v1, http://gpu2:8000/v1"
    assert client.request_key(messages(0), pool, None, 0, "") != key
    assert pool.limit_key() != one.limit_key()
    assert (pool.servers, one.servers) == (2, 1)  # the runner's workers scale with it


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("[]", "an empty list names no endpoint"),
        ("[http://gpu1:8000/v1, gpu2:8000/v1]", "entry 1 'gpu2:8000/v1' has no http:// or https:// scheme"),
        ("[http://gpu1:8000/v1, http://gpu1:8000/v1/]", "is listed twice"),
    ],
)
def test_a_bad_list_exits_2_naming_the_field(tmp_path: Path, base_url: str, message: str) -> None:
    text = DEMO.read_text(encoding="utf-8")
    seeds = (DEMO.parent / "../../seeds").resolve()
    recipe = tmp_path / "recipe.yaml"
    assert "model: gpt-4o-mini-2024-07-18" in text
    recipe.write_text(
        text.replace("../../seeds", str(seeds)).replace(
            "model: gpt-4o-mini-2024-07-18", f"model: gpt-4o-mini-2024-07-18, base_url: {base_url}", 1
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["validate", str(recipe), "--allow-outside-paths"])
    assert result.exit_code == 2, result.output
    assert "base_url" in result.output and message in result.output, result.output


def test_doctor_probes_each_server_and_a_run_spreads_over_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    monkeypatch.delenv("SYNTHGEN_PROBE")

    def plausible(request: dict[str, Any]) -> str:  # answers the dialogue generator can use
        return str(offline_reply(request)["choices"][0]["message"]["content"])

    config = {"responder": plausible}
    with OpenAIServer(ServerConfig(**config)) as a, OpenAIServer(ServerConfig(**config)) as b:
        demo = load_recipe(DEMO)
        listed = {n: p.model_copy(update={"base_url": (a.url, b.url)}) for n, p in demo.models.items()}
        recipe = demo.model_copy(update={"models": listed})
        reports = synthgen.doctor(recipe)
        # one report per (server, model): the demo's two models on each of the two servers
        assert sorted((r.capabilities.base_url, r.capabilities.model) for r in reports) == sorted(
            (url, p.model) for p in {p.model: p for p in listed.values()}.values() for url in (a.url, b.url)
        )
        notes: list[str] = []
        result = synthgen.run(recipe, out=tmp_path / "run", limit=2, notify=notes.append)
        assert result.steps["dialogues"].rows >= 1
        assert any("stands for all" in n for n in notes), notes  # the run probed the first, and said so
        probes = sum(r.capabilities.probe_requests for r in reports)
        paid = a.stats()["requests"] + b.stats()["requests"] - probes
        assert paid > 0 and min(a.stats()["served_ok"], b.stats()["served_ok"]) > 0
