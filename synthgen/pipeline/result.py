"""What a run reports: per-step counts that account for every planned item, and ``run.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunResult", "StepCounts"]


@dataclass
class StepCounts:
    """items = ok + failed + rejected + not_started: every planned item is accounted for."""

    generator: str
    version: str
    output: str
    items: int = 0
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    not_started: int = 0
    rows: int = 0
    rows_rejected: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the step did not run (its input step produced no row)
    stopped_early: str | None = None  # why scheduling stopped (its first items all failed alike)

    @property
    def failure_rate(self) -> float:
        """Failed items over the items that ran (not started ones are not failures)."""
        ran = self.items - self.not_started
        return self.failed / ran if ran else 0.0


@dataclass
class RunResult:
    """What ``run.json`` holds. ``usage``/``cost_usd`` sum every journaled item, so they are the
    dataset's tokens and cost across all invocations (resumes included); ``usage_this_run`` is this
    invocation's alone."""

    run_dir: str
    recipe: str
    fingerprint: str
    offline: bool
    steps: dict[str, StepCounts]
    usage: dict[str, Any]
    cost_usd: float
    usage_this_run: dict[str, Any]
    seconds: float
    splits: dict[str, int]
    prompts: dict[str, Any]
    versions: dict[str, str]
    response_models: list[str]
    token_counter: str
    budget: dict[str, Any]
    complete: bool
    files: dict[str, str] = field(default_factory=dict)  # sha256 of every other published file
    #: which price source (name, version, date) and the USD per 1M tokens used for each model
    prices: dict[str, Any] = field(default_factory=dict)
    #: people's review decisions applied at finalize (synthgen.reviews): counts and stale ones; {} if none
    review: dict[str, Any] = field(default_factory=dict)
    #: calls sent through OpenAI's Batch API: which profiles, and the journaled batches' totals
    batch: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
