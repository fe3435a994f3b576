"""Running one step: schedule its items, journal each, check its rows, collect and count them.

A step's work items run on one event loop, ``settings.workers`` at a time under the client's limits,
and each finished item is journaled at once (so a killed run resumes where it stopped). Every row
passes the :class:`~synthgen.pipeline.checks.RowChecks` before it is journaled; collecting the journal
in plan order deduplicates near-identical rows and fills :class:`StepCounts`, which account for every
planned item. Collaborators are handed in (checks, settings, the usage meter that knows the budget);
the step hands back its rows, counts, reports and whether the budget stopped it. The run around the
steps (splits, resume, finalize) is :mod:`synthgen.pipeline.runner`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from synthgen.errors import CompletionFailed, SynthgenError
from synthgen.generators.base import GeneratorContext, Rejected, WorkItem
from synthgen.llm.usage import UsageMeter, attributed
from synthgen.pipeline.budget import Budget, ItemCost
from synthgen.pipeline.checks import RowChecks
from synthgen.pipeline.journal import Journal
from synthgen.pipeline.plan import StepPlan
from synthgen.pipeline.result import StepCounts
from synthgen.pipeline.spool import RowSpoolWriter
from synthgen.quality.dedup import NearDuplicates
from synthgen.records import output_kind

__all__ = ["StepOutcome", "StepRun", "StepSettings"]

#: progress lines for runs without a terminal (nohup, CI), where no bar can be drawn
progress_log = logging.getLogger("synthgen.progress")


#: failure reasons worth another try on a re-run: the server or the network, not the answer
TRANSIENT = frozenset({"timeout", "connection", "rate_limited", "malformed_response", "http_408", "http_409"})


def transient(reason: str) -> bool:
    """A failure a re-run retries by itself (refusals, content filters, answers still invalid after
    re-asks, truncation and generator rejections are kept unless ``--retry-failed``)."""
    reason = reason.removeprefix("claims_")
    return reason in TRANSIENT or (reason.startswith("http_5") and reason[5:].isdigit())


@dataclass(frozen=True)
class StepSettings:
    workers: int
    progress: bool
    near_duplicate_threshold: float
    retry_failed: bool = False  # retry every failed item, permanent failures too
    progress_seconds: float | None = None  # without a bar: a progress line this often
    # stop scheduling when this invocation's first N finished items all failed for one reason: a
    # wrong model name, parameter or token limit fails every item alike, and paying for each proves
    # nothing more (0: never stop early)
    stop_after_same_failures: int = 10


@dataclass
class StepOutcome:
    """What a step hands back: its kept rows (in plan order, each with ``__split``), its counts, and a
    record of every failed item and rejected item or row (``failed``, ``rejected``)."""

    rows: Sequence[dict[str, Any]]  # a RowSpool: read back from disk, never all in memory
    counts: StepCounts
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"failed": [], "rejected": []})


class StepRun:
    """One step: schedule, journal, check; ``collect`` turns the journal into its outcome."""

    def __init__(
        self,
        plan: StepPlan,
        journal: Path,
        *,
        checks: RowChecks,
        settings: StepSettings,
        meter: UsageMeter,
        budget: Budget,
        cost: ItemCost,
    ) -> None:
        self.plan, self.checks, self.settings, self.meter = plan, checks, settings, meter
        self.budget, self.cost = budget, cost
        self.journal = Journal(journal)
        generator = plan.generator
        self.kind = output_kind(generator.output)
        self.counts = StepCounts(generator.name, generator.version, generator.output)
        self.usage = UsageMeter()  # over every journaled item: all invocations that built this step
        self.stopped_early: str | None = None

    async def execute(self, ctx: GeneratorContext) -> bool:
        """Generate every item not yet journaled; True when the budget stopped scheduling."""
        items = self.plan.items
        done = {
            k: status
            for k, (_, status, reason) in self.journal.index().items()
            if not self._retry(status, reason)
        }
        todo = [i for i in items if i.id not in done]
        pending: Iterator[WorkItem] = iter(todo)
        bar = tqdm(
            total=len(items),
            initial=len(items) - len(todo),
            desc=self.plan.step.name,
            unit="item",
            disable=not self.settings.progress,
            leave=False,
        )
        meter = self.meter
        status: Counter[str] = Counter(done.values())
        budget_stop = False
        first: list[str | None] = []  # this invocation's first finished items: their failure reason

        async def worker() -> None:
            nonlocal budget_stop
            for item in pending:
                if self._same_failures(first):
                    return
                reservation = self.cost.estimate
                if not self.budget.reserve(reservation):
                    budget_stop = True
                    return
                try:
                    entry = await self.process(item, ctx)
                finally:
                    self.budget.release(reservation)
                self.cost.observe(entry.pop("__cost_usd"))
                self.journal.append(entry)
                status[entry["status"]] += 1
                if len(first) < self.settings.stop_after_same_failures:
                    first.append(entry["reason"] if entry["status"] == "failed" else None)
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

        started, done_before = time.monotonic(), len(items) - len(todo)

        def line() -> str:
            done = sum(status.values())
            minutes = (time.monotonic() - started) / 60
            rate = (done - done_before) / minutes if minutes > 0 else 0.0
            eta = f"{(len(items) - done) / rate:.1f} min" if rate > 0 else "unknown"
            total = meter.total()
            unpriced = (
                f" (unpriced: {', '.join(sorted(meter.unpriced_models))})" if meter.unpriced_models else ""
            )
            return (
                f"{self.plan.step.name}: {done}/{len(items)} items, {status['ok']} rows, {status['failed']} failed, "
                f"{status['rejected']} rejected; {total.requests} requests, {total.total_tokens} tokens, "
                f"${total.cost_usd:.2f}{unpriced}; {rate:.1f} items/min, ETA {eta}"
            )

        async def reporter(every: float) -> None:
            while True:
                await asyncio.sleep(every)
                progress_log.info("%s", line())

        every = self.settings.progress_seconds
        report = None if self.settings.progress or not every else asyncio.create_task(reporter(every))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.settings.workers, len(todo))):
                    group.create_task(worker())
        except* SynthgenError as errors:
            raise errors.exceptions[0] from None
        finally:
            if report is not None:
                report.cancel()
                progress_log.info("%s", line())
            bar.close()
            self.journal.close()
        return budget_stop

    def _same_failures(self, first: list[str | None]) -> bool:
        """True once the first ``stop_after_same_failures`` items all failed for the same reason."""
        n = self.settings.stop_after_same_failures
        if n and len(first) == n and first[0] is not None and first.count(first[0]) == n:
            self.stopped_early = f"its first {n} items all failed with {first[0]}: stopped early"
            return True
        return False

    def _retry(self, status: str, reason: str) -> bool:
        return status == "failed" and (self.settings.retry_failed or transient(reason))

    async def process(self, item: WorkItem, ctx: GeneratorContext) -> dict[str, Any]:
        """The journal entry of one item, with the tokens and cost its calls took (cache hits apart)."""
        with attributed() as usage:
            entry = await self._process(item, ctx)
        snapshot = usage.snapshot()
        entry["usage"] = {
            k: snapshot[k] for k in ("by_model", "cached_by_model", "cache_hits", "unpriced_models")
        }
        entry["__cost_usd"] = usage.spent_usd  # for the budget's estimate; not journaled
        return entry

    async def _process(self, item: WorkItem, ctx: GeneratorContext) -> dict[str, Any]:
        entry: dict[str, Any] = {"item": item.id, "split": item.split, "seed_ids": list(item.seed_ids)}
        try:
            rows = await self.plan.generator.generate(item, ctx)
        except CompletionFailed as exc:
            return {**entry, "status": "failed", "reason": exc.reason, "detail": exc.message[:500]}
        except Rejected as exc:
            return {**entry, "status": "rejected", "reason": exc.reason, "detail": exc.detail[:500]}
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for row in rows:
            try:
                verdict = await self.checks(self.kind.name, row, ctx)
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

    def collect(self, spool: Path) -> StepOutcome:
        """Rows of journaled items in plan order, deduplicated, written to ``spool`` as they are kept
        (one item's entry in memory at a time), with counts and reports."""
        journal = self.journal.index()
        counts = self.counts
        counts.items = len(self.plan.items)
        writer = RowSpoolWriter(spool)
        outcome = StepOutcome(rows=[], counts=counts)
        step = self.plan.step.name

        def report(kind: str, item: str, reason: str, detail: str, row: Any = None) -> None:
            record = {"step": step, "item": item, "reason": reason, "detail": detail}
            if row is not None:
                record["row"] = row
            outcome.reports[kind].append(record)

        def rejected_row(item: str, reason: str, detail: str, row: Any) -> None:
            report("rejected", item, reason, detail, row)
            counts.rows_rejected += 1
            counts.rejections[reason] = counts.rejections.get(reason, 0) + 1

        for journaled in self.journal.entries():  # every attempt of an item was paid, retried ones too
            self.usage.merge(journaled.get("usage", {}))
        dedup = NearDuplicates(threshold=self.settings.near_duplicate_threshold)
        for item in self.plan.items:
            found = journal.get(item.id)
            if found is None:
                counts.not_started += 1
                continue
            entry = self.journal.read(found[0])
            for dropped in entry.get("dropped", []):
                rejected_row(item.id, dropped["reason"], dropped["detail"], dropped["row"])
            if entry["status"] == "failed":
                counts.failed += 1
                counts.failures[entry["reason"]] = counts.failures.get(entry["reason"], 0) + 1
                report("failed", item.id, entry["reason"], entry["detail"])
                continue
            if entry["status"] == "rejected":
                counts.rejected += 1
                if not entry.get("dropped"):
                    counts.rejections[entry["reason"]] = counts.rejections.get(entry["reason"], 0) + 1
                    report("rejected", item.id, entry["reason"], entry["detail"])
                continue
            kept: list[dict[str, Any]] = []
            for row in entry["rows"]:
                verdict = dedup.check(f"{item.id}#{len(kept)}", self.kind.dedup_text(row))
                if verdict is None:
                    kept.append(row)
                else:
                    rejected_row(item.id, verdict.reason, verdict.detail, row)
            if not kept:
                counts.rejected += 1
                continue
            counts.ok += 1
            counts.rows += len(kept)
            for row in kept:
                writer.write({**row, "__split": entry["split"]})
        counts.usage = self.usage.snapshot()["total"]
        outcome.rows = writer.close()
        return outcome
