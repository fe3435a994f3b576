"""SQLite response cache: a re-run pays for nothing already answered.

Keyed by a request fingerprint (endpoint, model, messages, sampling parameters, schema, the
caller's version) **and the sample index**, so K samples of one request are K entries rather than
one answer repeated. WAL mode lets several processes share one cache file; a schema version in
``PRAGMA user_version`` rebuilds the table when its layout changes. Keys and rows never contain
API keys: the fingerprint has the key's env var *name* at most.

A cache is a convenience, never a reason for a run to fail: a corrupt file (not SQLite, truncated,
our version number over other columns, a directory in its place) is moved aside to
``<name>.corrupt-<time>`` with one warning and a fresh cache takes its place; a file that cannot be
used as it is (locked by another process past the busy timeout, read-only, a folder that cannot be
created) is left alone, with one warning, and the run goes on without a cache. A disabled cache
never opens, creates or moves anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "fingerprint"]

log = logging.getLogger("synthgen.llm.cache")

SCHEMA_VERSION = 2
_COLUMNS = ("key", "created", "model", "value")
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # sqlite3.Error.sqlite_errorname of a damaged file


class _NotACache(Exception):
    """The path holds something that is not our cache (other columns under our version, a folder)."""


def _is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, _NotACache) or getattr(exc, "sqlite_errorname", None) in _CORRUPT


def fingerprint(request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines an answer."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Get/put of validated answers by fingerprint. ``enabled=False`` reads and writes nothing.

    ``timeout`` is how long to wait on another process's lock before giving up on the file.
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._usable = enabled  # False once the file proved unusable: the run goes on uncached
        self._moved_aside = False
        self.hits = 0
        self.misses = 0

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise _NotACache("a directory is in its place")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            # read before writing anything (WAL mode rewrites the header): a file that is not ours is
            # moved aside as it was
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(responses)"))
                if columns != _COLUMNS:
                    raise _NotACache(
                        f"its table 'responses' has columns {columns or '(none)'}, not {_COLUMNS}"
                    )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if version != SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DROP TABLE IF EXISTS responses")
                conn.execute(
                    "CREATE TABLE responses (key TEXT PRIMARY KEY, created REAL NOT NULL, "
                    "model TEXT NOT NULL, value TEXT NOT NULL) WITHOUT ROWID"
                )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection, opened on first use; ``None`` once the file proved unusable."""
        while self._conn is None and self._usable:
            try:
                self._conn = self._open()
            except (sqlite3.Error, OSError, _NotACache) as exc:
                self._give_up_on_file(exc)
        return self._conn

    def _give_up_on_file(self, exc: BaseException) -> None:
        """Move a corrupt file aside (once) for a fresh one; otherwise stop using the cache. One warning."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if _is_corrupt(exc) and not self._moved_aside:
            self._moved_aside = True
            try:
                aside = self._move_aside()
            except OSError as move_error:
                exc = move_error
            else:
                log.warning(
                    "response cache %s is corrupt or not a cache (%s): moved it aside to %s and started a fresh one",
                    self.path,
                    exc,
                    aside.name,
                )
                return
        self._usable = False
        log.warning(
            "response cache %s cannot be used (%s): running without a cache, so answers are neither reused "
            "nor kept (check the file and its folder: permissions, another process holding it)",
            self.path,
            exc,
        )

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # a stale WAL would be replayed into the fresh file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any] | None:
        """Rows of one statement, or ``None`` when the cache is off; file trouble never raises."""
        if not self.enabled:
            return None
        with self._lock:
            while (conn := self._connection()) is not None:
                try:
                    return conn.execute(sql, params).fetchall()
                except sqlite3.Error as exc:  # corruption found past the header, a lock held too long
                    self._give_up_on_file(exc)
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        rows = self._execute("SELECT value FROM responses WHERE key=?", (key,))
        if rows is None:
            return None
        if not rows:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(rows[0][0])
        return value

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        blob = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self._execute(
            "INSERT OR REPLACE INTO responses (key, created, model, value) VALUES (?, ?, ?, ?)",
            (key, time.time(), model, blob),
        )

    def __len__(self) -> int:
        rows = self._execute("SELECT count(*) FROM responses")
        return int(rows[0][0]) if rows else 0

    def __bool__(self) -> bool:
        """Always true: ``if cache:`` must not count the rows (``__len__`` would, opening the file)."""
        return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
