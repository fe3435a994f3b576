"""Where a RUN_DIR stands, read from its journals alone (no network, no lock): items per step, spend, and
the batches it submitted to OpenAI's Batch API with their state, counts and age.

A batch whose last journaled state is ``submitted`` was still running at the provider when the last
run stopped (Ctrl-C, a crash, a closed laptop): re-running the same command polls it instead of
paying again (docs/batch.md).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthgen.errors import ConfigError
from synthgen.llm.batch import read_batches
from synthgen.pipeline.journal import Journal
from synthgen.pipeline.ledger import Ledger
from synthgen.rundir import RunDir

__all__ = ["RunStatus", "run_status"]


@dataclass
class RunStatus:
    """Items finished per step and status, requests and USD paid so far, and every journaled batch."""

    run_dir: str
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    spent_usd: float = 0.0
    batches: list[dict[str, Any]] = field(default_factory=list)
    finalized: bool = False

    @property
    def pending_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.batches if b["status"] == "submitted"]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pending_batches": len(self.pending_batches)}

    def lines(self) -> list[str]:
        """The terminal view of ``synthgen status``."""
        out = [f"{self.run_dir}: {'finalized' if self.finalized else 'not finalized yet'}"]
        for step, counts in self.steps.items():
            parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            out.append(f"  {step}: {parts or 'no item finished'}")
        out.append(f"  paid: {self.requests} requests, ${self.spent_usd:.4f}")
        if self.batches:
            out.append(f"  batches: {len(self.batches)} ({len(self.pending_batches)} still at the provider)")
            for b in self.batches:
                state = "in flight" if b["status"] == "submitted" else b["status"]
                out.append(
                    f"    {b['batch']}  {b['model']}  {state}: {b['requests']} requests, {b['answered']} "
                    f"answered, {b['resubmitted']} resubmitted; {_age(b['age_s'])} old"
                )
        return out


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_status(run_dir: str | Path) -> RunStatus:
    """The state of ``run_dir`` as its journals record it; raises :class:`ConfigError` if it is no RUN_DIR."""
    rd = RunDir(Path(run_dir))
    if not rd.state_dir.is_dir():
        raise ConfigError(
            f"{run_dir} is not a RUN_DIR (no {rd.state_dir.name}/ folder)",
            path=str(run_dir),
            hint="pass the --out folder of a `synthgen run`",
        )
    status = RunStatus(run_dir=rd.path.name, finalized=rd.run_json.exists())
    for path in sorted((rd.state_dir / "journal").glob("*.jsonl")):
        latest = Journal(path).load()
        status.steps[path.stem] = dict(Counter(entry["status"] for entry in latest.values()))
    paid = Ledger(rd.ledger).totals()
    status.requests, status.spent_usd = paid.total().requests, round(paid.spent_usd, 6)
    now = time.time()
    status.batches = [record.summary(now) for record in read_batches(rd.batch_journal).values()]
    return status
