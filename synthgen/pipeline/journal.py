"""Append-only JSONL journal per step: what makes a run resumable after Ctrl-C, a crash or SIGKILL.

Each finished work item is one line, flushed as soon as it is known: ``ok`` with its rows (and the
rows the quality filters rejected), ``failed`` with a reason, or ``rejected`` with a reason. A torn
last line (a kill mid-write) is ignored on read, so that item simply runs again; its paid calls are
answered by the response cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["Journal"]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def entries(self) -> Iterator[dict[str, Any]]:
        """Complete entries, last write of an item wins; a torn trailing line is skipped, and so is a
        line that is not an entry (edited by hand, or another tool's): its item simply runs again."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("item"), str) and "status" in entry:
                    yield entry

    def load(self) -> dict[str, dict[str, Any]]:
        return {e["item"]: e for e in self.entries()}

    def index(self) -> dict[str, tuple[int, str, str]]:
        """Item -> (byte offset of its last complete entry, status, reason): what resume and collect
        need to know of every item without holding every item's rows (read one with :meth:`read`)."""
        found: dict[str, tuple[int, str, str]] = {}
        if not self.path.exists():
            return found
        with self.path.open("rb") as f:
            offset = 0
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    entry = None
                if isinstance(entry, dict) and isinstance(entry.get("item"), str) and "status" in entry:
                    found[entry["item"]] = (offset, str(entry["status"]), str(entry.get("reason", "")))
                offset += len(line)
        return found

    def read(self, offset: int) -> dict[str, Any]:
        """The entry at ``offset`` (from :meth:`index`)."""
        with self.path.open("rb") as f:
            f.seek(offset)
            entry: dict[str, Any] = json.loads(f.readline())
        return entry

    def append(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_torn_tail()
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
