"""SQLite response cache: a re-run pays for nothing already answered.

Keyed by a request fingerprint (endpoint, model, messages, sampling parameters, schema, the
caller's version) **and the sample index**, so K samples of one request are K entries rather than
one answer repeated. WAL mode lets several processes share one cache file; a schema version in
``PRAGMA user_version`` rebuilds the table when its layout changes. Keys and rows never contain
API keys: the fingerprint has the key's env var *name* at most.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "fingerprint"]

SCHEMA_VERSION = 2


def fingerprint(request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines an answer."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Get/put of validated answers by fingerprint. ``enabled=False`` reads and writes nothing."""

    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DROP TABLE IF EXISTS responses")
                conn.execute(
                    "CREATE TABLE responses (key TEXT PRIMARY KEY, created REAL NOT NULL, "
                    "model TEXT NOT NULL, value TEXT NOT NULL) WITHOUT ROWID"
                )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            self._conn = conn
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        with self._lock:
            row = self._connect().execute("SELECT value FROM responses WHERE key=?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        blob = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO responses (key, created, model, value) VALUES (?, ?, ?, ?)",
                (key, time.time(), model, blob),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
