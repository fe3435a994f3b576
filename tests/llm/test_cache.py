"""The response cache survives a broken file: a corrupt one is moved aside with one warning and a fresh
one takes its place; one that cannot be used (locked, not creatable) is skipped with one warning; a
disabled cache never touches its path. Nothing here may end a run with a traceback."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from tests.servers.openai_server import OpenAIServer, ServerConfig

VALUE = {"content": "hola", "model": "m", "usage": {}}


def filled(path: Path, rows: int = 3000) -> Path:
    cache = ResponseCache(path)
    for i in range(rows):
        cache.put(f"k{i}", "m", {"content": "x" * 200, "i": i})
    cache.close()
    return path


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def asides(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def assert_fresh_and_working(cache: ResponseCache) -> None:
    assert cache.get("k1") is None  # the old rows went aside with the file
    cache.put("new", "m", VALUE)
    assert cache.get("new") == VALUE and len(cache) == 2  # "added" after the move, and this one
    cache.close()
    assert ResponseCache(cache.path).get("new") == VALUE  # a real SQLite file again, reopened


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "cache.sqlite3"


def garbage(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(8192)
    path.write_bytes(data)
    return data


def truncated(path: Path) -> bytes:
    data = filled(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data[: len(data) // 2]


def wrong_schema(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE responses (id INTEGER PRIMARY KEY, payload BLOB)")
    conn.execute("INSERT INTO responses (payload) VALUES (x'00')")
    conn.execute("PRAGMA user_version=2")  # our schema version, not our columns
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("damage", [garbage, truncated, wrong_schema], ids=lambda f: f.__name__)
def test_a_corrupt_file_is_moved_aside_once_and_a_fresh_cache_works(
    path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    before = damage(path)  # type: ignore[operator]
    cache = ResponseCache(path)
    assert cache.get("k1") is None and cache.get("k2999") is None  # no traceback: a miss
    cache.put("added", "m", VALUE)
    [aside] = asides(path)
    assert aside.read_bytes() == before  # kept as it was, for whoever wants to look
    [warning] = warnings_of(caplog)
    assert str(path) in warning and str(aside.name) in warning and "corrupt" in warning, warning
    assert cache.get("added") == VALUE
    cache.close()
    caplog.clear()
    assert_fresh_and_working(ResponseCache(path))
    assert warnings_of(caplog) == [] and len(asides(path)) == 1


def test_a_directory_in_its_place_is_moved_aside(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("mine")
    cache = ResponseCache(path)
    cache.put("k", "m", VALUE)
    assert cache.get("k") == VALUE
    [aside] = asides(path)
    assert (aside / "keep.txt").read_text() == "mine"
    [warning] = warnings_of(caplog)
    assert "directory" in warning and str(path) in warning
    cache.close()


@pytest.fixture
def locked(path: Path) -> Iterator[Path]:
    """Another process's exclusive lock on a cache in rollback-journal mode (WAL needs the lock to start)."""
    filled(path, rows=10)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    yield path
    holder.execute("ROLLBACK")
    holder.close()


def test_a_locked_file_is_left_alone_and_the_run_goes_on_uncached(
    locked: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = locked.read_bytes()
    cache = ResponseCache(locked, timeout=0.2)
    assert cache.get("k1") is None
    cache.put("k1", "m", VALUE)  # nothing raised: answers are simply not kept
    assert cache.get("k1") is None and cache.get("k2") is None
    assert len(cache) == 0
    assert asides(locked) == [] and locked.read_bytes() == before  # someone else's: not moved, not written
    [warning] = warnings_of(caplog)  # once, not once per call
    assert str(locked) in warning and "locked" in warning and "without" in warning, warning
    cache.close()


def test_an_uncreatable_path_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.write_text("a file where SYNTHGEN_HOME should be a folder")
    cache = ResponseCache(home / "cache.sqlite3")
    cache.put("k", "m", VALUE)
    assert cache.get("k") is None
    assert len(warnings_of(caplog)) == 1 and str(home) in warnings_of(caplog)[0]
    assert home.read_text().startswith("a file")


@pytest.mark.parametrize("content", [None, "garbage", "directory"])
def test_a_disabled_cache_never_touches_its_path(
    path: Path, caplog: pytest.LogCaptureFixture, content: str | None
) -> None:
    if content == "garbage":
        garbage(path)
    elif content == "directory":
        path.mkdir(parents=True)
    listing = sorted(path.parent.rglob("*")) if path.parent.exists() else None
    cache = ResponseCache(path, enabled=False)
    cache.put("k", "m", VALUE)
    assert cache.get("k") is None and len(cache) == 0 and bool(cache)
    cache.close()
    after = sorted(path.parent.rglob("*")) if path.parent.exists() else None
    assert after == listing  # no file, folder, -wal or aside created; nothing moved
    assert warnings_of(caplog) == []


def test_truthiness_does_not_open_the_file(path: Path) -> None:
    garbage(path)
    cache = ResponseCache(path)
    assert cache  # no COUNT(*), so no open: the corrupt file is not even looked at yet
    assert asides(path) == []


async def test_the_client_answers_through_a_corrupt_cache(
    path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test-secret-123")
    garbage(path)
    with OpenAIServer(ServerConfig()) as server:
        profile = ModelProfile(
            name="a", model="gpt-4o-2024-08-06", base_url=server.url, api_key_env="TEST_KEY"
        )
        async with ChatClient(cache=ResponseCache(path)) as client:
            first = await client.complete([{"role": "user", "content": "hola"}], profile=profile)
        async with ChatClient(cache=ResponseCache(path)) as client:
            again = await client.complete([{"role": "user", "content": "hola"}], profile=profile)
        assert server.stats()["requests"] == 1
    assert again.cached and again.content == first.content  # the fresh cache kept the answer
    assert len(warnings_of(caplog)) == 1
