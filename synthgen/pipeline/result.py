"""What a run reports: per-step counts that account for every planned item, and ``run.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunResult", "StepCounts", "run_problems"]


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


def run_problems(
    steps: Mapping[str, StepCounts], max_failure_rate: float, failures: list[dict[str, Any]]
) -> list[str]:
    """Why this run must not replace the RUN_DIR's dataset: no row at all, too many failed items, or a
    step left without input. Empty when the run is good (a budget stop is good: what was paid is kept)."""
    problems: list[str] = []
    for name, counts in steps.items():
        if counts.skipped:
            problems.append(f"step {name} did not run: {counts.skipped}")
        if counts.stopped_early:
            problems.append(f"step {name}: {counts.stopped_early} (fix the cause, then re-run to go on)")
        if counts.failed and counts.failure_rate > max_failure_rate:
            reasons = ", ".join(
                f"{r} x{n}" for r, n in sorted(counts.failures.items(), key=lambda x: -x[1])[:3]
            )
            example = next((str(f["detail"])[:300] for f in failures if f["step"] == name), "")
            problems.append(
                f"step {name}: {counts.failed} of {counts.items - counts.not_started} items failed "
                f"({counts.failure_rate:.0%} > max_failure_rate {max_failure_rate:.0%}; {reasons}"
                + (f"; e.g. {example}" if example else "")
                + ")"
            )
    ran = sum(c.items - c.not_started for c in steps.values())
    if ran and not sum(c.rows for c in steps.values()):
        problems.append("no step produced a row")
    return problems
