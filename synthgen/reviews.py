"""Human review decisions: the append-only log people write, and how it applies to a run's rows.

``synthgen review RUN_DIR`` appends one JSON line per decision to ``.synthgen/reviews.jsonl``: who,
when, which row (config and key), the row's content hash, and what (``approve``, ``reject`` with a
reason, ``edit`` of one assistant turn for a dialogue; ``approve``, ``reject``, ``swap``, ``tie`` for a
preference pair). Nothing is ever rewritten: a later decision on the same row wins, edits accumulate.

Finalize (``synthgen run`` on the RUN_DIR, or ``synthgen review --apply``) applies the decisions on top
of the rows the pipeline made: rejected rows (and tied pairs) move to ``rejected.jsonl`` with the
reason ``human: <reason>``, edited and swapped rows carry the change, every kept row gets a
``reviewed`` column. A decision made on different content (the row changed since: another recipe,
another model) is reported as stale and not applied. The rows as the pipeline made them are kept in
``.synthgen/unreviewed.jsonl``: what reviewers see and what hashes are taken of.

This module sits with :mod:`synthgen.records`: the pipeline applies decisions and the review app writes
them, and neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synthgen.errors import ConfigError
from synthgen.rundir import RunDir

__all__ = [
    "ACTIONS",
    "REVIEWED_COLUMN",
    "AppendLog",
    "Decision",
    "Reviews",
    "apply_reviews",
    "content_hash",
    "has_reviews",
    "keyed_rows",
    "make_review",
    "now",
    "read_unreviewed",
    "write_unreviewed",
]

#: what a reviewer may decide, per config
ACTIONS: dict[str, tuple[str, ...]] = {
    "sft": ("approve", "reject", "edit"),
    "prefs": ("approve", "reject", "swap", "tie"),
}
REVIEWED_COLUMN = "reviewed"
_NOT_CONTENT = ("split", REVIEWED_COLUMN)
_MAX_TEXT = 100_000


def content_hash(row: Mapping[str, Any]) -> str:
    """sha256 of a row's content (its public columns, not its split or review): what a review was made on."""
    content = {k: v for k, v in row.items() if not k.startswith("__") and k not in _NOT_CONTENT}
    text = json.dumps(content, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _base_key(config: str, row: Mapping[str, Any]) -> str:
    return str(row["dialogue_id"] if config == "sft" else row["prompt_id"])


def keyed_rows(config: str, rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(key, row) in row order: ``dialogue_id`` (sft) or ``prompt_id`` (prefs), ``#2``, ``#3`` for repeats.

    A generator: finalize streams a step's spooled rows through it without holding them all."""
    seen: dict[str, int] = {}
    for row in rows:
        base = _base_key(config, row)
        seen[base] = seen.get(base, 0) + 1
        yield (base if seen[base] == 1 else f"{base}#{seen[base]}", row)


# --- the log ---------------------------------------------------------------------------------------


class AppendLog:
    """A JSONL file many processes append to: one decision per line, under an OS lock, fsynced before
    :meth:`append` returns (a killed server loses nothing it answered). A line a kill cut short is
    skipped on reading and never glued to the next one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        from filelock import FileLock

        line = (json.dumps(dict(record), ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30, thread_local=False):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size:
                    with self.path.open("rb") as f:
                        f.seek(size - 1)
                        torn = f.read(1) != b"\n"
                    line = (b"\n" if torn else b"") + line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every whole record, in append order (lines that are not JSON objects are skipped)."""
        if not self.path.is_file():
            return []
        records: list[dict[str, Any]] = []
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return records


def now() -> str:
    """UTC, to the second: when a decision or a label was made."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_review(
    *,
    config: str,
    key: str,
    hash: str,
    action: str,
    reviewer: str,
    reason: str = "",
    turn: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A decision as a log record; raises :class:`ConfigError` naming the field when it cannot be one."""
    if config not in ACTIONS:
        raise ConfigError(f"unknown config {config!r}", field="config", hint="sft or prefs")
    if action not in ACTIONS[config]:
        raise ConfigError(
            f"{action!r} is not a decision for {config} rows",
            field="action",
            hint=", ".join(ACTIONS[config]),
        )
    reviewer = " ".join(str(reviewer).split())[:80]
    if not reviewer:
        raise ConfigError("who is reviewing?", field="reviewer", hint="type your name in the name field")
    if not key or len(hash) != 64:
        raise ConfigError("a decision names its row's key and content hash", field="hash")
    record: dict[str, Any] = {
        "time": now(),
        "reviewer": reviewer,
        "config": config,
        "key": key,
        "hash": hash,
        "action": action,
    }
    if action == "reject":
        reason = " ".join(str(reason).split())[:500]
        if not reason:
            raise ConfigError("a rejection needs a reason", field="reason", hint="say what is wrong")
        record["reason"] = reason
    if action == "edit":
        if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
            raise ConfigError("an edit names the turn it changes", field="turn")
        if not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
            raise ConfigError("an edit needs the new text", field="text", hint="the turn cannot be empty")
        record["turn"], record["text"] = turn, text
    return record


# --- folding decisions -------------------------------------------------------------------------------


@dataclass
class Decision:
    """A row's standing decision: the last action, the accumulated edits (turn -> text), who and when."""

    action: str
    reviewer: str
    time: str
    reason: str = ""
    edits: dict[int, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """approved, edited, rejected, swapped, tie."""
        if self.action == "reject":
            return "rejected"
        if self.action == "tie":
            return "tie"
        if self.action == "swap":
            return "swapped"
        return "edited" if self.edits else "approved"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "action": self.action,
            "reviewer": self.reviewer,
            "time": self.time,
            "reason": self.reason,
            "edits": {str(k): v for k, v in sorted(self.edits.items())},
        }


def fold(records: Sequence[Mapping[str, Any]]) -> Decision | None:
    """The decision a row's records (in append order, all on the same content) add up to."""
    decision: Decision | None = None
    edits: dict[int, str] = {}
    for r in records:
        if r.get("action") == "edit":
            edits[int(r["turn"])] = str(r["text"])
        decision = Decision(
            str(r.get("action")), str(r.get("reviewer", "")), str(r.get("time", "")), str(r.get("reason", ""))
        )
    if decision is not None:
        decision.edits = edits
    return decision


class Reviews:
    """Every decision of a RUN_DIR, grouped by row; applies them to rows and counts what it did."""

    def __init__(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.records = list(records)
        self.by_row: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in self.records:
            if r.get("config") in ACTIONS and isinstance(r.get("key"), str):
                self.by_row.setdefault((str(r["config"]), str(r["key"])), []).append(r)
        self.counts = {
            "reviewed": 0,
            "approved": 0,
            "edited": 0,
            "swapped": 0,
            "rejected": 0,
            "unreviewed": 0,
        }
        self.stale: list[str] = []  # "config key: why", one per row whose decision was not applied
        self.seen: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, run_dir: Path) -> Reviews:
        return cls(AppendLog(RunDir(run_dir).reviews).read())

    def decision(self, config: str, key: str, hash: str) -> tuple[Decision | None, bool]:
        """(the decision on this content, whether decisions on other content exist: stale)."""
        records = self.by_row.get((config, key), [])
        current = [r for r in records if r.get("hash") == hash]
        return fold(current), len(current) < len(records)

    def apply(
        self, config: str, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, Mapping[str, Any], str]]]:
        """(kept rows, with decisions applied and a ``reviewed`` column; [(key, row, reason)] rejected)."""
        kept: list[dict[str, Any]] = []
        dropped: list[tuple[str, Mapping[str, Any], str]] = []
        for key, row in keyed_rows(config, rows):
            self.seen.add((config, key))
            decision, stale = self.decision(config, key, content_hash(row))
            if stale and decision is None:
                self.stale.append(f"{config} {key}: the row changed since it was reviewed")
            out = dict(row)
            state = ""
            if decision is not None:
                problem = self._edit(config, out, decision)
                if problem:
                    self.stale.append(f"{config} {key}: {problem}")
                    decision = None
            if decision is not None:
                self.counts["reviewed"] += 1
                state = decision.state
                if state in ("rejected", "tie"):
                    self.counts["rejected"] += 1
                    dropped.append(
                        (key, row, "human: " + (decision.reason if state == "rejected" else "tie"))
                    )
                    continue
                self.counts[state] += 1
            else:
                self.counts["unreviewed"] += 1
            if self.records:
                out[REVIEWED_COLUMN] = state
            kept.append(out)
        return kept, dropped

    @staticmethod
    def _edit(config: str, row: dict[str, Any], decision: Decision) -> str:
        """Apply edits or a swap to ``row`` in place; a reason when the decision does not fit the row."""
        if config == "sft" and decision.edits:
            messages = [dict(m) for m in row["messages"]]
            for turn, text in decision.edits.items():
                if not 0 <= turn < len(messages) or messages[turn]["role"] != "assistant":
                    return f"edited turn {turn} is not an assistant turn of the row"
                messages[turn]["content"] = text
            row["messages"] = messages
        if config == "prefs" and decision.action == "swap":
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            row["score_chosen"], row["score_rejected"] = row["score_rejected"], row["score_chosen"]
        return ""

    def summary(self) -> dict[str, Any]:
        """What run.json and the card report: counts, stale decisions, decisions on rows no longer there."""
        gone = sorted(f"{c} {k}" for c, k in self.by_row if (c, k) not in self.seen)
        return {
            "decisions": len(self.records),
            "reviewers": len({r.get("reviewer") for r in self.records}),
            **self.counts,
            "stale": self.stale + [f"{row}: no such row any more" for row in gone],
        }


# --- the rows as the pipeline made them ---------------------------------------------------------------


def write_unreviewed(path: Path, outputs: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
    """``.synthgen/unreviewed.jsonl``: one line per sft and prefs row before human decisions, atomically."""
    tmp = path.with_suffix(".jsonl.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8") as f:
        for config in ACTIONS:
            for key, row in keyed_rows(config, outputs.get(config, [])):
                public = {k: v for k, v in row.items() if not k.startswith("__")}
                split = row.get("__split", row.get("split", ""))
                record = {"config": config, "key": key, "split": split, "row": public}
                f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_unreviewed(run_dir: Path) -> list[dict[str, Any]]:
    """What reviewers review: the unreviewed rows finalize kept, else (a RUN_DIR finalized before there
    were any) the published rows, which nothing has changed yet."""
    rd = RunDir(run_dir)
    if rd.unreviewed.is_file():
        return AppendLog(rd.unreviewed).read()
    records: list[dict[str, Any]] = []
    for config in ACTIONS:
        rows = rd.read_rows(config)
        for key, row in keyed_rows(config, rows):
            public = {k: v for k, v in row.items() if k not in _NOT_CONTENT}
            records.append({"config": config, "key": key, "split": row["split"], "row": public})
    return records


def has_reviews(run_dir: Path) -> bool:
    """Whether anyone recorded a decision: without one, finalize streams the rows as they were made."""
    path = RunDir(run_dir).reviews
    return path.is_file() and path.stat().st_size > 0


def apply_reviews(
    run_dir: Path, outputs: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """(outputs with decisions applied, rejected.jsonl records of the rows people rejected, the summary
    run.json keeps; empty without any decision)."""
    reviews = Reviews.of(run_dir)
    if not reviews.records:
        return {k: list(map(dict, v)) for k, v in outputs.items()}, [], {}
    applied: dict[str, list[dict[str, Any]]] = {}
    rejected: list[dict[str, Any]] = []
    for config, rows in outputs.items():
        if config not in ACTIONS:
            applied[config] = [dict(r) for r in rows]
            continue
        applied[config], dropped = reviews.apply(config, rows)
        rejected += [
            {
                "step": "review",
                "config": config,
                "item": key,
                "reason": reason,
                "detail": "rejected by a person in `synthgen review`",
                "row": {k: v for k, v in row.items() if not k.startswith("__")},
            }
            for key, row, reason in dropped
        ]
    return applied, rejected, reviews.summary()
