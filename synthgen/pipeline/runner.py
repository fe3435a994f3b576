"""The runner: a recipe becomes a RUN_DIR, resumably.

Splits are assigned per seed before anything is generated (stratified by topic, from the recipe
seed) and reused by every step and by evaluation, so no seed's paraphrases sit in both train and
test. Steps run in recipe order (:func:`synthgen.pipeline.plan.walk`), each fed its ``from`` step's
rows and run by a :class:`~synthgen.pipeline.step.StepRun`; re-running on the same RUN_DIR skips
journaled items and refuses when the recipe's fingerprint changed. Finalize writes the Hub-layout
dataset atomically (:mod:`synthgen.pipeline.finalize`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synthgen._version import __version__
from synthgen.errors import ConfigError, ResumeError, RunFailed
from synthgen.llm.batch import BatchCollector, BatchJournal, batch_price_quote, read_batches, summarize
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.limits import Limits
from synthgen.llm.profile import MAX_CONCURRENCY, ModelProfile
from synthgen.llm.usage import TOKEN_COUNTER, UsageMeter, price_quote, price_source
from synthgen.paths import cache_path
from synthgen.pipeline.budget import Budget, ItemCost
from synthgen.pipeline.checks import RowChecks
from synthgen.pipeline.estimate import item_cost
from synthgen.pipeline.finalize import recover, write_reports, write_run_dir
from synthgen.pipeline.journal import Journal
from synthgen.pipeline.ledger import Ledger
from synthgen.pipeline.plan import StepPlan, assign_splits, walk
from synthgen.pipeline.preflight import preflight
from synthgen.pipeline.progress import progress_seconds, show_progress_lines
from synthgen.pipeline.result import RunResult, StepCounts, run_problems
from synthgen.pipeline.step import StepRun, StepSettings
from synthgen.recipe import Recipe, load_recipe
from synthgen.reviews import apply_reviews, has_reviews
from synthgen.rundir import RunDir

__all__ = ["default_out", "run"]

log = logging.getLogger("synthgen.pipeline.runner")


def default_out(recipe: Recipe) -> Path:
    """Where a run goes without ``--out``: ``runs/<recipe name>`` under the working directory."""
    return Path("runs") / recipe.name


class _Runner:
    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        *,
        offline: bool,
        limit: int | None,
        concurrency: int | None,
        use_cache: bool,
        progress: bool,
        retry_failed: bool,
        notify: Callable[[str], None],
        generate: bool = True,
    ) -> None:
        self.notify, self.generate = notify, generate
        self.recipe, self.out, self.offline, self.limit = recipe, out, offline, limit
        self.rundir = RunDir(out)
        self.profiles = {
            n: p.model_copy(update={"max_concurrency": concurrency}) if concurrency else p
            for n, p in recipe.models.items()
        }
        # a batch profile's calls go out in waves: every item must be live for a wave to hold them all
        batched = [p for p in self.profiles.values() if p.batch and not offline]
        self.settings = StepSettings(
            workers=max([_workers(self.profiles.values())] + [p.max_batch_requests for p in batched]),
            progress=progress,
            near_duplicate_threshold=recipe.quality.near_duplicate_threshold,
            retry_failed=retry_failed,
            progress_seconds=None if progress else progress_seconds(),
        )
        self.ledger = Ledger(self.rundir.ledger)
        self.client = ChatClient(
            cache=ResponseCache(cache_path(), enabled=use_cache),
            meter=UsageMeter(sink=self.ledger.record),
            limits=Limits(),
            offline=offline,
            batches=BatchCollector(BatchJournal(self.rundir.batch_journal)) if batched else None,
        )
        self.checks = RowChecks(
            seeds={s.id: s for s in recipe.loaded_seeds},
            language=recipe.language,
            quality=recipe.quality,
            client=self.client,
            profiles=self.profiles,
        )
        self.fingerprint = recipe.fingerprint()  # once per run: it renders every template
        self.splits: dict[str, str] = {}

    def prepare(self) -> None:
        """Create or resume the RUN_DIR state; refuse a resume under a different recipe."""
        rd = self.rundir
        rd.state_dir.mkdir(parents=True, exist_ok=True)
        recover(self.out)  # a dataset swap a kill interrupted: finish it before anything else
        state = rd.read_state()
        if state is not None and self._resumable(state):
            if state.get("offline") != self.offline:
                raise ResumeError(
                    f"{self.out} was made {'offline' if state.get('offline') else 'online'}",
                    path=str(self.out),
                    hint="use a new --out, or match --offline",
                )
            self.splits = rd.read_splits()
            upgraded = {
                **state,
                "fingerprint": self.fingerprint,
                "recipe_path": self._recipe_path() or state.get("recipe_path"),
                "limit": self.limit if self.generate else state.get("limit"),
            }
            if upgraded != state:  # made by an earlier release, or the recipe file moved
                _write_atomic(rd.state_file, json.dumps(upgraded, indent=1))
            return
        self.splits = assign_splits(
            self.recipe.loaded_seeds, self.recipe.output.test_fraction, self.recipe.seed
        )
        if self.recipe.output.test_fraction > 0 and "test" not in self.splits.values():
            self.notify(
                f"no seed went to the test split: a topic needs 2 or more seeds to give one (test_fraction "
                f"{self.recipe.output.test_fraction} of {len(self.splits)} seeds); evaluation will have no "
                "held-out seeds"
            )
        _write_atomic(rd.splits_file, json.dumps(self.splits, indent=1, sort_keys=True))
        state = {
            "fingerprint": self.fingerprint,
            "offline": self.offline,
            "recipe": self.recipe.portable(),
            "recipe_path": self._recipe_path(),
            "limit": self.limit,  # the last run's: re-finalizing (review --apply) plans the same items
            "created": time.time(),
        }
        _write_atomic(rd.state_file, json.dumps(state, indent=1))

    def _recipe_path(self) -> str | None:
        """Where the recipe file is, relative to the RUN_DIR: ``synthgen review --apply`` re-finalizes
        with it. Relative, because no file of a RUN_DIR may carry a local absolute path (a home folder
        with a person's name) that ``publish`` or a shared folder would spread."""
        if self.recipe.path is None:
            return None
        try:
            return os.path.relpath(self.recipe.path.resolve(), self.out.resolve())
        except ValueError:  # another drive (Windows): no relative path exists, so none is kept
            return None

    def _prices(self) -> dict[str, Any]:
        """The price source and each profile model's prices (run.json and the card say what cost used)."""
        if self.offline:
            return {"source": "offline (free)", "models": {}}
        models: dict[str, Any] = {}
        for profile in self.profiles.values():
            quote = batch_price_quote if profile.batch else price_quote
            prices, source = quote(profile.model, profile.prices)
            models[profile.model] = {**(prices.model_dump() if prices else {}), "source": source}
        return {**price_source(), "models": models}

    def _batch(self) -> dict[str, Any]:
        """Which calls went through the Batch API: the profiles, and every journaled batch's totals."""
        profiles = {n: p.model for n, p in self.profiles.items() if p.batch and not self.offline}
        if not profiles:
            return {}
        this_run = self.client.batches.stats if self.client.batches is not None else None
        return {
            "profiles": profiles,
            **summarize(read_batches(self.rundir.batch_journal)),
            "this_run": None
            if this_run is None
            else {
                "waves": this_run.waves,
                "requests": this_run.requests,
                "resubmitted": this_run.resubmitted,
                "attached": this_run.attached,
            },
        }

    def _journaled(self) -> UsageMeter:
        """Usage as the journals record it: every finished attempt of every item of every step."""
        meter = UsageMeter()
        for step in self.recipe.steps:
            for entry in Journal(self.rundir.journal(step.name)).entries():
                meter.merge(entry.get("usage", {}))
        return meter

    def _resumable(self, state: Mapping[str, Any]) -> bool:
        """True to resume ``state``; False to start afresh (nothing was generated under it yet, e.g. a run
        that failed at its first request); raises when another recipe's work is in the RUN_DIR."""
        stored = state["fingerprint"]
        if stored in (self.fingerprint, self.recipe.fingerprint(legacy=True)):
            return True
        if not self.rundir.has_work():
            return False
        raise ResumeError(
            f"{self.out} was made by a different recipe (fingerprint {stored[:12]} != "
            f"{self.fingerprint[:12]}): {_what_changed(state.get('recipe', {}), self.recipe.portable())}",
            path=str(self.out),
            hint="use a new --out, or restore the recipe to resume",
        )

    async def run(self) -> RunResult:
        started = time.monotonic()
        self.prepare()
        prompts = self.recipe.prompt_library()
        steps: dict[str, StepCounts] = {}
        reports: dict[str, list[dict[str, Any]]] = {"failed": [], "rejected": []}
        dataset_usage = UsageMeter()  # journaled: every invocation that built this RUN_DIR
        self.ledger.open(baseline=self._journaled())
        budget = Budget(
            None if self.offline else self.recipe.budget.max_usd,
            spent_before=self.ledger.totals().spent_usd,
            meter=self.client.meter,
        )

        async def produce(plan: StepPlan) -> Sequence[dict[str, Any]]:
            priced = (
                self.generate and budget.max_usd is not None and not budget.exhausted and not plan.skipped
            )
            step_run = StepRun(
                plan,
                self.rundir.journal(plan.step.name),
                checks=self.checks,
                settings=self.settings,
                meter=self.client.meter,
                budget=budget,
                cost=ItemCost(await item_cost(plan) if priced else 0.0),
            )
            t0 = time.monotonic()
            if self.generate and not budget.exhausted and not plan.skipped:
                await step_run.execute(plan.context(self.client, self.profiles, prompts))
            outcome = step_run.collect(self.rundir.state_dir / "rows" / f"{plan.step.name}.jsonl")
            outcome.counts.seconds = round(time.monotonic() - t0, 3)
            outcome.counts.skipped = plan.skipped
            outcome.counts.stopped_early = step_run.stopped_early
            steps[plan.step.name] = outcome.counts
            dataset_usage.merge(step_run.usage.snapshot())
            for kind, records in outcome.reports.items():
                reports[kind].extend(records)
            return outcome.rows

        try:
            async with self.client:
                outputs = await walk(self.recipe, self.splits, produce, limit=self.limit)
        finally:
            self.ledger.close()
        paid = self.ledger.totals()  # what the server billed, kills and retries included
        usage = {
            **paid.snapshot(),
            "cache_hits": dataset_usage.cache_hits,
            "cached_by_model": dataset_usage.snapshot()["cached_by_model"],
            "unpriced_models": sorted(paid.unpriced_models | dataset_usage.unpriced_models),
        }
        result = RunResult(
            run_dir=self.out.name,  # the folder's name only: an absolute path can name a person
            recipe=self.recipe.name,
            fingerprint=self.fingerprint,
            offline=self.offline,
            steps=steps,
            usage=usage,
            cost_usd=round(paid.spent_usd, 6),
            usage_this_run=self.client.meter.snapshot(),
            seconds=round(time.monotonic() - started, 3),
            splits=dict(Counter(self.splits.values())),
            prompts=prompts.hashes(),
            versions=_versions(self.recipe),
            response_models=sorted(set(paid.by_model) | set(dataset_usage.cached_by_model)),
            token_counter=TOKEN_COUNTER,
            budget={
                "max_usd": self.recipe.budget.max_usd,
                "exhausted": budget.exhausted,
                "spent_usd": round(paid.spent_usd, 6),
            },
            complete=all(c.not_started == 0 for c in steps.values()),
            prices=self._prices(),
            batch=self._batch(),
        )
        problems = run_problems(steps, self.recipe.max_failure_rate, reports["failed"])
        if problems:  # the journal keeps every answer: a re-run retries and finalizes
            write_reports(self.out, reports)
            raise RunFailed(
                "; ".join(problems),
                path=self.out,
                hint="see .synthgen/failures.jsonl; fix the cause and re-run the same command to retry "
                "(the dataset already in the RUN_DIR, if any, was kept)",
            )
        by_kind: dict[str, list[Sequence[dict[str, Any]]]] = {}
        for step in self.recipe.steps:
            by_kind.setdefault(self.recipe.generator(step).output, []).append(outputs[step.name])
        # people's decisions (synthgen review) on top; the rows as made stay in .synthgen for them
        published: Mapping[str, Sequence[Sequence[dict[str, Any]]]] = by_kind
        if has_reviews(self.out):  # only then are the rows held in memory, to apply decisions to
            flat = {kind: list(itertools.chain(*sources)) for kind, sources in by_kind.items()}
            reviewed, human, result.review = apply_reviews(self.out, flat)
            published = {kind: [rows] for kind, rows in reviewed.items()}
            reports["rejected"].extend(human)
            for line in result.review.get("stale", [])[:5]:
                self.notify(f"review decision not applied: {line}")
        write_run_dir(self.out, self.recipe, result, published, self.splits, reports, unreviewed=by_kind)
        return result


def _what_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "changed: " + (", ".join(keys) if keys else "seeds or prompt files")


def _versions(recipe: Recipe) -> dict[str, str]:
    from importlib.metadata import version

    versions = {"synthgen": __version__}
    for package in ("openai", "datasets", "huggingface-hub", "pydantic", "tenacity"):
        with contextlib.suppress(Exception):
            versions[package] = version(package)
    for step in recipe.steps:
        generator = recipe.generator(step)
        versions[f"generator:{generator.name}"] = generator.version
    return versions


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _workers(profiles: Iterable[ModelProfile]) -> int:
    """Items in flight: twice what every key can serve at once. A dialogue alternates between its
    student's and its assistant's keys, so workers sized to one key leave the other idle whenever
    more items happen to wait on the first; max_concurrency holds per server of a profile's list."""
    per_key: dict[tuple[str, str, str], int] = {}
    for p in profiles:
        per_key[p.limit_key()] = max(per_key.get(p.limit_key(), 0), p.max_concurrency * p.servers)
    return 2 * sum(per_key.values())


def run(
    recipe: Recipe | str | Path,
    *,
    out: str | Path | None = None,
    offline: bool = False,
    limit: int | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
    progress: bool = False,
    confirm: Callable[[str], bool] | None = None,
    retry_failed: bool = False,
    allow_outside_paths: bool = False,
    notify: Callable[[str], None] | None = None,
    generate: bool = True,
) -> RunResult:
    """Generate the recipe's datasets into ``out`` (default ``runs/<name>``), resuming what is there.

    ``confirm`` is the budget gate: when given and the recipe has a budget, the run is estimated first
    and ``confirm(message)`` decides whether to start when the estimate passes it (the CLI passes
    ``click.confirm``); declining raises :class:`~synthgen.errors.BudgetExceeded`. Offline runs cost
    nothing and are never gated. A re-run retries items whose failure was transient (network, 429,
    5xx, timeouts); ``retry_failed`` retries every failed item. ``notify`` hears what a person should
    know before money is spent (where requests go when the recipe names its own endpoints).
    ``generate=False`` sends nothing: it re-finalizes what is journaled (``synthgen review --apply``).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, allow_outside_paths=allow_outside_paths)
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(
            f"concurrency {concurrency} is outside 1..{MAX_CONCURRENCY}",
            field="concurrency",
            hint="requests in flight per endpoint; providers answer no faster past a few hundred",
        )
    out = Path(out) if out is not None else default_out(recipe)
    notify = notify or log.warning
    if not offline and generate:
        preflight(recipe, confirm=confirm, notify=notify)
    if not progress:
        show_progress_lines()
    runner = _Runner(
        recipe,
        out,
        offline=offline,
        limit=limit,
        concurrency=concurrency,
        use_cache=use_cache,
        progress=progress,
        retry_failed=retry_failed,
        notify=notify,
        generate=generate,
    )
    with runner.rundir.locked("run"):  # one writer: a second run or a publish of `out` fails at once
        try:
            return asyncio.run(runner.run())  # the client closes its cache on the way out
        finally:
            if not recover(runner.out):  # interrupted mid-swap: finish it; else drop what was staged
                shutil.rmtree(runner.rundir.tmp, ignore_errors=True)
            shutil.rmtree(runner.rundir.state_dir / "rows", ignore_errors=True)  # the steps' row spools
