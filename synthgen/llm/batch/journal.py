"""The batch journal: every batch a run submitted, written before anything else happens to it.

A batch is paid for once it is created, and it keeps running on the provider's side when synthgen
stops (Ctrl-C, a crash, a closed laptop). So the moment ``batches.create`` returns, its id and the
``custom_id`` of every request in it go to this append-only JSONL file (flushed and fsynced), and a
re-run on the same RUN_DIR attaches each request to the batch that already holds it instead of
paying again. Later lines record what became of a batch (its final state and counts) for
``synthgen status``. A torn last line (a kill mid-write) is ignored: at worst that one batch is
submitted again. This module knows nothing of the RUN_DIR layout: its path is handed in.

Lines::

    {"event": "submitted", "batch": "batch_...", "input_file": "file-...", "endpoint": URL,
     "model": M, "requests": N, "custom_ids": [...], "at": UNIX}
    {"event": "ended", "batch": "batch_...", "status": "completed|expired|failed|cancelled",
     "answered": N, "errors": N, "resubmitted": N, "at": UNIX}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["BatchJournal", "BatchRecord", "read_batches", "summarize"]


@dataclass
class BatchRecord:
    """One submitted batch as the journal knows it."""

    batch: str
    endpoint: str
    model: str
    requests: int
    submitted_at: float
    custom_ids: list[str] = field(default_factory=list, repr=False)
    status: str = "submitted"  # until an "ended" line says otherwise
    answered: int = 0
    errors: int = 0
    resubmitted: int = 0
    ended_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """What ``synthgen status`` shows: state, counts and age (custom ids left out)."""
        now = time.time() if now is None else now
        return {
            "batch": self.batch,
            "model": self.model,
            "endpoint": self.endpoint,
            "status": self.status,
            "requests": self.requests,
            "answered": self.answered,
            "errors": self.errors,
            "resubmitted": self.resubmitted,
            "age_s": round(now - self.submitted_at, 1),
        }


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn by a kill mid-write
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("batch"), str):
                yield entry


def read_batches(path: Path) -> dict[str, BatchRecord]:
    """Every journaled batch by id, in submission order, with its last known state."""
    records: dict[str, BatchRecord] = {}
    for entry in _lines(path):
        if entry.get("event") == "submitted":
            records[entry["batch"]] = BatchRecord(
                batch=entry["batch"],
                endpoint=str(entry.get("endpoint", "")),
                model=str(entry.get("model", "")),
                requests=int(entry.get("requests", 0)),
                submitted_at=float(entry.get("at", 0.0)),
                custom_ids=[str(c) for c in entry.get("custom_ids", [])],
            )
        elif entry.get("event") == "ended" and (record := records.get(entry["batch"])) is not None:
            record.status = str(entry.get("status", "ended"))
            record.answered = int(entry.get("answered", 0))
            record.errors = int(entry.get("errors", 0))
            record.resubmitted = int(entry.get("resubmitted", 0))
            record.ended_at = float(entry.get("at", 0.0))
    return records


class BatchJournal:
    """Appends to one batch journal file and knows which batch holds each ``custom_id``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.records = read_batches(path)
        # the latest batch holding each request: a request resubmitted after an expiry is in two
        self.holder: dict[str, str] = {}
        for record in self.records.values():
            for custom_id in record.custom_ids:
                self.holder[custom_id] = record.batch
            record.custom_ids = []  # the index above is all a run needs: do not hold them twice

    def _append(self, entry: dict[str, Any], *, durable: bool) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size:
                with self.path.open("rb+") as f:  # drop a torn tail before appending after it
                    data = f.read()
                    if not data.endswith(b"\n"):
                        f.truncate(data.rfind(b"\n") + 1)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def submitted(
        self, batch: str, *, input_file: str, endpoint: str, model: str, custom_ids: Sequence[str]
    ) -> BatchRecord:
        """Journal a batch the provider just created (durably: it is paid for from now on)."""
        now = time.time()
        self._append(
            {
                "event": "submitted",
                "batch": batch,
                "input_file": input_file,
                "endpoint": endpoint,
                "model": model,
                "requests": len(custom_ids),
                "custom_ids": list(custom_ids),
                "at": now,
            },
            durable=True,
        )
        record = BatchRecord(batch, endpoint, model, len(custom_ids), now)
        self.records[batch] = record
        for custom_id in custom_ids:
            self.holder[custom_id] = batch
        return record

    def ended(self, batch: str, status: str, *, answered: int, errors: int, resubmitted: int) -> None:
        now = time.time()
        self._append(
            {
                "event": "ended",
                "batch": batch,
                "status": status,
                "answered": answered,
                "errors": errors,
                "resubmitted": resubmitted,
                "at": now,
            },
            durable=False,
        )
        record = self.records.get(batch)
        if record is not None:
            record.status, record.answered, record.errors = status, answered, errors
            record.resubmitted, record.ended_at = resubmitted, now

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def summarize(records: dict[str, BatchRecord]) -> dict[str, Any]:
    """Totals over every journaled batch (all invocations of a run), per model and per state."""
    by_model: dict[str, dict[str, int]] = {}
    states: dict[str, int] = {}
    for record in records.values():
        totals = by_model.setdefault(
            record.model, {"batches": 0, "requests": 0, "answered": 0, "resubmitted": 0}
        )
        totals["batches"] += 1
        totals["requests"] += record.requests
        totals["answered"] += record.answered
        totals["resubmitted"] += record.resubmitted
        states[record.status] = states.get(record.status, 0) + 1
    return {
        "batches": len(records),
        "requests": sum(m["requests"] for m in by_model.values()),
        "answered": sum(m["answered"] for m in by_model.values()),
        "resubmitted": sum(m["resubmitted"] for m in by_model.values()),
        "states": states,
        "by_model": by_model,
    }
