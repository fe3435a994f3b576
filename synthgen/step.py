"""Running one step: plan its items, schedule them, journal each, filter its rows, count everything.

A step's work items run on one event loop, ``runner.workers`` at a time under the client's limits,
and each finished item is journaled at once (so a killed run resumes where it stopped). Every row
passes the quality checks (and, when the recipe asks, claim verification) before it is journaled;
collecting the journal in plan order deduplicates near-identical rows and fills :class:`StepCounts`,
which account for every planned item. The run around the steps (splits, resume, finalize) is
:mod:`synthgen.runner`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from tqdm import tqdm

from .dedup import NearDuplicates, dedup_text
from .errors import CompletionFailed, SynthgenError
from .generator import Generator, GeneratorContext, Rejected, WorkItem
from .journal import Journal
from .recipe import Step
from .usage import UsageMeter, attributed

if TYPE_CHECKING:
    from .runner import _Runner

__all__ = ["StepCounts", "StepRun"]


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


class StepRun:
    """One step: plan, schedule, journal, filter; yields the step's kept rows."""

    def __init__(self, runner: _Runner, step: Step, generator: Generator) -> None:
        self.runner, self.step, self.generator = runner, step, generator
        self.journal = Journal(runner.state / "journal" / f"{step.name}.jsonl")
        self.counts = StepCounts(generator.name, generator.version, generator.output)
        self.usage = UsageMeter()  # over every journaled item: all invocations that built this step

    def plan(self, upstream: Sequence[Mapping[str, Any]]) -> list[WorkItem]:
        r = self.runner
        items = self.generator.plan(r.recipe.loaded_seeds, r.splits, r.recipe.seed, self.step.name, upstream)
        return items[: r.limit] if r.limit is not None else items

    async def execute(self, items: list[WorkItem], ctx: GeneratorContext) -> None:
        done = self.journal.load()
        pending: Iterator[WorkItem] = iter([i for i in items if i.id not in done])
        bar = tqdm(
            total=len(items),
            initial=len(items) - sum(1 for i in items if i.id not in done),
            desc=self.step.name,
            unit="item",
            disable=not self.runner.progress,
            leave=False,
        )
        meter = self.runner.client.meter

        status: Counter[str] = Counter(entry["status"] for entry in done.values())

        async def worker() -> None:
            for item in pending:
                if meter.over_budget:
                    self.runner.budget_exhausted = True
                    return
                entry = await self.process(item, ctx)
                self.journal.append(entry)
                status[entry["status"]] += 1
                bar.update()
                total = meter.total()
                bar.set_postfix(
                    rows=status["ok"],
                    failed=status["failed"],
                    rejected=status["rejected"],
                    tokens=total.total_tokens,
                    usd=f"{total.cost_usd:.2f}",
                    refresh=False,
                )

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.runner.workers):
                    group.create_task(worker())
        except* SynthgenError as errors:
            raise errors.exceptions[0] from None
        finally:
            bar.close()
            self.journal.close()

    async def process(self, item: WorkItem, ctx: GeneratorContext) -> dict[str, Any]:
        """The journal entry of one item, with the tokens and cost its calls took (cache hits apart)."""
        with attributed() as usage:
            entry = await self._process(item, ctx)
        snapshot = usage.snapshot()
        entry["usage"] = {
            k: snapshot[k] for k in ("by_model", "cached_by_model", "cache_hits", "unpriced_models")
        }
        return entry

    async def _process(self, item: WorkItem, ctx: GeneratorContext) -> dict[str, Any]:
        entry: dict[str, Any] = {"item": item.id, "split": item.split, "seed_ids": list(item.seed_ids)}
        try:
            rows = await self.generator.generate(item, ctx)
        except CompletionFailed as exc:
            return {**entry, "status": "failed", "reason": exc.reason, "detail": exc.message[:500]}
        except Rejected as exc:
            return {**entry, "status": "rejected", "reason": exc.reason, "detail": exc.detail[:500]}
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for row in rows:
            try:
                verdict = self.runner.check(self.generator.output, row)
                if verdict is None and self.runner.recipe.quality.verify_claims:
                    verdict = await self.runner.verify_claims(self.generator.output, row, ctx)
            except ValidationError as exc:
                return {**entry, "status": "failed", "reason": "invalid_row", "detail": str(exc)[:500]}
            except CompletionFailed as exc:
                return {
                    **entry,
                    "status": "failed",
                    "reason": f"claims_{exc.reason}",
                    "detail": exc.message[:500],
                }
            if verdict is None:
                kept.append(row)
            else:
                dropped.append({"reason": verdict.reason, "detail": verdict.detail, "row": row})
        if not kept:
            first = dropped[0] if dropped else {"reason": "empty", "detail": "no rows"}
            return {
                **entry,
                "status": "rejected",
                "reason": first["reason"],
                "detail": first["detail"],
                "dropped": dropped,
            }
        return {**entry, "status": "ok", "rows": kept, "dropped": dropped}

    def collect(self, items: list[WorkItem]) -> list[dict[str, Any]]:
        """Rows of journaled items in plan order, deduplicated; fills the counts and reports."""
        journal = self.journal.load()
        counts = self.counts
        counts.items = len(items)
        for journaled in journal.values():
            self.usage.merge(journaled.get("usage", {}))
        dedup = NearDuplicates(threshold=self.runner.recipe.quality.near_duplicate_threshold)
        rows: list[dict[str, Any]] = []
        for item in items:
            entry = journal.get(item.id)
            if entry is None:
                counts.not_started += 1
                continue
            for dropped in entry.get("dropped", []):
                self.runner.report(
                    "rejected", self.step.name, item.id, dropped["reason"], dropped["detail"], dropped["row"]
                )
                counts.rows_rejected += 1
                counts.rejections[dropped["reason"]] = counts.rejections.get(dropped["reason"], 0) + 1
            if entry["status"] == "failed":
                counts.failed += 1
                counts.failures[entry["reason"]] = counts.failures.get(entry["reason"], 0) + 1
                self.runner.report("failed", self.step.name, item.id, entry["reason"], entry["detail"])
                continue
            if entry["status"] == "rejected":
                counts.rejected += 1
                if not entry.get("dropped"):
                    counts.rejections[entry["reason"]] = counts.rejections.get(entry["reason"], 0) + 1
                    self.runner.report("rejected", self.step.name, item.id, entry["reason"], entry["detail"])
                continue
            kept: list[dict[str, Any]] = []
            for row in entry["rows"]:
                verdict = dedup.check(f"{item.id}#{len(kept)}", _dedup_text(self.generator.output, row))
                if verdict is None:
                    kept.append(row)
                    continue
                self.runner.report("rejected", self.step.name, item.id, verdict.reason, verdict.detail, row)
                counts.rows_rejected += 1
                counts.rejections[verdict.reason] = counts.rejections.get(verdict.reason, 0) + 1
            if not kept:
                counts.rejected += 1
                continue
            counts.ok += 1
            counts.rows += len(kept)
            rows.extend({**row, "__split": entry["split"]} for row in kept)
        return rows


def _dedup_text(output: str, row: Mapping[str, Any]) -> str:
    if output == "seeds":
        return str(row.get("question", json.dumps(row, sort_keys=True)))
    return dedup_text(row)
