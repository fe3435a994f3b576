"""A step's kept rows on disk, read back one at a time: what keeps a run's memory flat as items grow.

The rows of every step used to be one list held until finalize (and the preference step's rows hold
four candidate answers each), so peak memory grew with the dataset. A step's collect writes its rows
to ``.synthgen/rows/<step>.jsonl`` instead, and the next step's plan and finalize's parquet writer
read them back in order. A :class:`RowSpool` is a sequence (``len``, iteration, indexing), so a
generator's ``plan(upstream=...)`` reads it as it read the list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, overload

__all__ = ["RowSpool", "RowSpoolWriter"]


class RowSpool(Sequence[dict[str, Any]]):
    """Rows written by a :class:`RowSpoolWriter`; each read parses its line again (nothing is kept)."""

    def __init__(self, path: Path, offsets: list[int]) -> None:
        self.path, self._offsets = path, offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self._offsets:
            return
        with self.path.open(encoding="utf-8") as f:
            for _, line in zip(self._offsets, f, strict=False):
                row: dict[str, Any] = json.loads(line)
                yield row

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        with self.path.open("rb") as f:
            f.seek(self._offsets[index])
            row: dict[str, Any] = json.loads(f.readline())
        return row


class RowSpoolWriter:
    """Append rows to a fresh spool file; :meth:`close` hands back the :class:`RowSpool`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self._offsets: list[int] = []

    def write(self, row: Mapping[str, Any]) -> None:
        self._offsets.append(self._file.tell())
        self._file.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    def close(self) -> RowSpool:
        self._file.close()
        return RowSpool(self.path, self._offsets)

    def discard(self) -> None:
        self._file.close()
        if self.path.exists():
            os.unlink(self.path)
