"""The ledger: every response a RUN_DIR paid for, one line each, appended the moment it arrives.

The journal records an item's usage when the item finishes, so an item in flight at a kill or
Ctrl-C has paid for answers that no journal entry records (on resume they are cache hits, free):
run.json under-reported cost by 20-26% after such stops. The ledger is told of each paid response
by the client's meter as it is recorded, so the dataset's usage and cost in run.json, and the
budget, count every billed response that reached this process, whatever became of its item.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from synthgen.llm.usage import TokenUsage, UsageMeter

__all__ = ["Ledger"]


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self, baseline: UsageMeter) -> None:
        """Start appending; a RUN_DIR made before ledgers existed starts from its journals' totals."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", encoding="utf-8")
        if new and baseline.by_model:
            self._write({"baseline": baseline.snapshot()["by_model"]})

    def record(self, model: str, usage: TokenUsage) -> None:
        """The meter's sink: one paid response."""
        if self._file is not None:
            self._write({"model": model, **asdict(usage)})

    def _write(self, line: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()  # in the kernel's hands: a SIGKILL of this process cannot lose it

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def totals(self) -> UsageMeter:
        """Paid usage per model over every invocation (a torn last line is skipped)."""
        meter = UsageMeter()
        if not self.path.exists():
            return meter
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                entry = json.loads(line)
                if "baseline" in entry:
                    meter.merge({"by_model": entry["baseline"]})
                else:
                    model = entry.pop("model")
                    meter.merge({"by_model": {model: entry}})
        return meter
