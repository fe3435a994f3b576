"""The RUN_DIR contract: every path in a run's folder, and the readers of what it holds.

A RUN_DIR is a dataset folder in Hub layout (``datasets.load_dataset(RUN_DIR, "sft")`` works as is)
plus a private ``.synthgen/`` folder that is never published::

    README.md                          dataset card (YAML header declares the configs)
    data/<config>/<split>-*.parquet    sft and prefs (train, test); seeds (train, with a split column)
    generated/seeds.jsonl              seeds made from documents, when a step made any
    run.json                           the run's result: counts, usage, cost, versions, fingerprint
    .synthgen/                         state.json, splits.json, journal/<step>.jsonl, ledger.jsonl,
                                       batches.jsonl (Batch API), failures.jsonl, rejected.jsonl,
                                       publish.json, lock (one writer at a time), swap.json, tmp/
                                       and trash/ of finalize, reviews.jsonl (people's decisions),
                                       unreviewed.jsonl

This module is the one place that spells those names. The pipeline writes through these paths; the
card, reports, evaluation and publishing read through them. It imports nothing of synthgen but
:mod:`synthgen.errors`, so every wing may depend on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthgen.errors import ConfigError, RunDirLocked

__all__ = ["CONFIGS", "PUBLISHED", "SPLITS", "RunDir", "data_files", "file_sha256"]

CONFIGS = ("sft", "prefs", "seeds")
SPLITS = ("train", "test")
PUBLISHED = ("data", "generated", "run.json", "README.md")  # what finalize swaps in and publish sends
STATE = ".synthgen"
_REPORTS = {"failed": "failures.jsonl", "rejected": "rejected.jsonl"}


@dataclass(frozen=True)
class RunDir:
    """A RUN_DIR's paths and readers; ``RunDir(path)`` touches nothing on disk."""

    path: Path

    # --- the published part -------------------------------------------------------------------

    @property
    def card(self) -> Path:
        return self.path / "README.md"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    def generated(self, kind: str) -> Path:
        """Rows of a kind published for review rather than as a config: ``generated/seeds.jsonl``."""
        return self.path / "generated" / f"{kind}.jsonl"

    def data_dir(self, config: str) -> Path:
        return self.path / "data" / config

    def data_file(self, config: str, split: str) -> Path:
        """Where finalize writes one config's split (one shard)."""
        return self.data_dir(config) / f"{split}-00000-of-00001.parquet"

    def parquet_files(self, config: str, split: str | None = None) -> list[Path]:
        """One config's shards, train before test (or one split's)."""
        return [
            path
            for s in (SPLITS if split is None else (split,))
            for path in sorted(self.data_dir(config).glob(f"{s}-*.parquet"))
        ]

    def published_files(self) -> list[Path]:
        """Every file a publish sends, besides the card and run.json: parquet shards and generated seeds."""
        data = sorted((self.path / "data").rglob("*.parquet")) if (self.path / "data").is_dir() else []
        generated = self.path / "generated"
        extra = sorted(p for p in generated.rglob("*") if p.is_file()) if generated.is_dir() else []
        return data + extra

    # --- the private part (.synthgen/) ----------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.path / STATE

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def splits_file(self) -> Path:
        return self.state_dir / "splits.json"

    @property
    def batch_journal(self) -> Path:
        """Every OpenAI batch the run submitted (id, custom ids, final state): what a resume polls."""
        return self.state_dir / "batches.jsonl"

    @property
    def publish_record(self) -> Path:
        return self.state_dir / "publish.json"

    @property
    def tmp(self) -> Path:
        """Finalize builds the next dataset here before swapping it in."""
        return self.state_dir / "tmp"

    @property
    def trash(self) -> Path:
        return self.state_dir / "trash"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    @property
    def lock_owner(self) -> Path:
        """Who holds the lock (pid, action, since): read by a second process to say who is in the way."""
        return self.state_dir / "lock.json"

    @contextlib.contextmanager
    def locked(self, action: str) -> Iterator[None]:
        """Hold the RUN_DIR while ``action`` (run, publish) writes it; a second process fails at once.

        An OS file lock (``flock``), so the kernel releases it when the process dies, SIGKILL
        included: a crash never leaves a stale lock behind. Raises :class:`RunDirLocked` naming the
        process that holds it.
        """
        from filelock import FileLock, Timeout

        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_file, blocking=False, thread_local=False, fallback_to_soft=False)
        try:
            lock.acquire()
        except Timeout:
            raise RunDirLocked(
                f"{self.path} is in use: {self._holder()}",
                path=self.path,
                hint="wait for that process to finish (or stop it), or use another --out",
            ) from None
        try:
            owner = {"pid": os.getpid(), "action": action, "since": round(time.time(), 3)}
            self.lock_owner.write_text(json.dumps(owner), encoding="utf-8")
            yield
        finally:
            with contextlib.suppress(OSError):
                self.lock_owner.unlink()
            lock.release()

    def _holder(self) -> str:
        try:
            owner = json.loads(self.lock_owner.read_text(encoding="utf-8"))
            since = time.strftime("%H:%M:%S", time.localtime(owner["since"]))
            return f"synthgen {owner['action']} (pid {owner['pid']}) holds it since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another synthgen process holds it"

    @property
    def reviews(self) -> Path:
        """People's review decisions, appended by ``synthgen review`` (:mod:`synthgen.reviews`)."""
        return self.state_dir / "reviews.jsonl"

    @property
    def unreviewed(self) -> Path:
        """The sft and prefs rows as the pipeline made them, before people's decisions: what they review."""
        return self.state_dir / "unreviewed.jsonl"

    @property
    def ledger(self) -> Path:
        """Every paid response, appended as it arrives (the dataset's usage, kills included)."""
        return self.state_dir / "ledger.jsonl"

    def journal(self, step: str) -> Path:
        return self.state_dir / "journal" / f"{step}.jsonl"

    @property
    def swap_marker(self) -> Path:
        """Present while finalize moves a staged dataset into place (lists what it staged)."""
        return self.state_dir / "swap.json"

    def published_names(self) -> list[str]:
        """Every published file but run.json, as paths relative to the RUN_DIR (run.json's manifest)."""
        names = [p.relative_to(self.path).as_posix() for p in self.published_files()]
        return sorted([*names, "README.md"] if self.card.is_file() else names)

    def manifest_problems(self) -> list[str]:
        """How the published files differ from run.json's manifest (empty: one complete dataset).
        A RUN_DIR finalized before manifests existed has none to check against: no problems."""
        manifest = self.read_result().get("files")
        if not isinstance(manifest, dict):
            return []
        found = set(self.published_names())
        problems = [f"{name}: missing" for name in sorted(set(manifest) - found)]
        problems += [f"{name}: not in run.json" for name in sorted(found - set(manifest))]
        problems += [
            f"{name}: changed since run.json was written"
            for name in sorted(found & set(manifest))
            if file_sha256(self.path / name) != manifest[name]
        ]
        return problems

    def has_work(self) -> bool:
        """Whether anything was generated here: a journaled item or a finalized dataset."""
        journals = self.state_dir / "journal"
        written = journals.is_dir() and any(p.stat().st_size for p in journals.glob("*.jsonl"))
        return written or self.run_json.exists()

    def report(self, kind: str) -> Path:
        """``failed`` -> failures.jsonl, ``rejected`` -> rejected.jsonl: one record per dropped item or row."""
        return self.state_dir / _REPORTS[kind]

    # --- readers --------------------------------------------------------------------------------

    def read_result(self) -> dict[str, Any]:
        """``run.json``; a RUN_DIR without one was never finalized."""
        if not self.run_json.is_file():
            raise ConfigError(
                f"{self.path} has no run.json",
                path=self.path,
                hint="run `synthgen run RECIPE --out RUN_DIR` first (or let it finish)",
            )
        data: dict[str, Any] = json.loads(self.run_json.read_text(encoding="utf-8"))
        return data

    def read_rows(
        self, config: str, split: str | None = None, columns: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of one config, train then test, each with its ``split`` (seeds rows carry their own)."""
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = []
        for path in self.parquet_files(config, split):
            file_split = path.name.split("-", 1)[0]
            rows.extend(
                {"split": file_split, **row} for row in pq.read_table(path, columns=columns).to_pylist()
            )
        return rows

    def first_row(self, config: str) -> dict[str, Any] | None:
        import pyarrow.parquet as pq

        for path in self.parquet_files(config):
            rows = pq.read_table(path).slice(0, 1).to_pylist()
            if rows:
                return dict(rows[0])
        return None

    def read_splits(self) -> dict[str, str]:
        """Seed id -> split, as the runner assigned them: ``.synthgen/splits.json``, else the published
        ``seeds`` config (a RUN_DIR downloaded from the Hub has no private state); {} when neither."""
        if self.splits_file.is_file():
            return {str(k): str(v) for k, v in json.loads(self.splits_file.read_text()).items()}
        return {str(r["id"]): str(r["split"]) for r in self.read_rows("seeds", columns=["id", "split"])}

    def read_state(self) -> dict[str, Any] | None:
        """The resume state (fingerprint, offline, the portable recipe); None before the first run."""
        if not self.state_file.is_file():
            return None
        state: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        return state

    def read_reports(self, kind: str) -> list[dict[str, Any]]:
        path = self.report(kind)
        if not path.is_file():
            return []
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_files(run_dir: Path) -> dict[str, dict[str, str]]:
    """config -> split -> glob (relative to the RUN_DIR), for the configs and splits that have files:
    the ``configs`` of the card's YAML header."""
    found: dict[str, dict[str, str]] = {}
    rd = RunDir(run_dir)
    for config in CONFIGS:
        for split in SPLITS:
            if rd.parquet_files(config, split):
                found.setdefault(config, {})[split] = f"data/{config}/{split}-*.parquet"
    return found
