"""The batch collector: requests of every live work item become waves of OpenAI batches.

Generators do not change: each item awaits its next call as it does online, and the client hands
the request to :meth:`BatchCollector.send` instead of sending it. The collector queues requests per
endpoint and model (a batch file holds one model) and submits a wave when no more can arrive (no
new request for ``settle`` seconds: every live item is waiting on an answer), when ``max_batch_requests``
or 200 MB are queued, or when the oldest request has waited ``max_age`` seconds. Each batch is
journaled the moment it exists, polled with capped exponential backoff, and its output and error
files are streamed line by line: each answer resolves its request's future as it is read, so a run
never holds a whole output file. A request the batch did not answer (expired, failed, cancelled, or
a retryable per-request error) goes into the next wave; answered ones are kept. On a re-run, a
request whose ``custom_id`` the journal places in a batch is attached to that batch (polled, its
output read again) instead of being sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

import openai

from synthgen.errors import CompletionFailed, ConfigError, SynthgenError
from synthgen.llm.batch.api import call, gone, lines
from synthgen.llm.batch.journal import BatchJournal
from synthgen.llm.profile import ModelProfile
from synthgen.llm.secrets import scrub

__all__ = ["ENDPOINT", "MAX_BATCH_BYTES", "BatchCollector", "BatchStats", "batch_line"]

log = logging.getLogger("synthgen.llm.batch")

ENDPOINT: Final = "/v1/chat/completions"
MAX_BATCH_BYTES = 190 * 1024 * 1024  # OpenAI takes 200 MB per input file: keep a margin
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
_RETRY_STATUS = frozenset({408, 409, 429})
_MAX_RESUBMITS = 3  # a request no batch answered after this many waves fails (a batch that always fails)


def batch_line(custom_id: str, messages: list[dict[str, str]], params: dict[str, Any]) -> bytes:
    """One JSONL line of a batch input file: the body the SDK would send online for ``params``."""
    body: dict[str, Any] = {"messages": messages}
    for name, value in params.items():
        if name in ("extra_headers", "extra_body"):
            continue  # headers cannot travel in a batch; extra_body merges into the body, as online
        body[name] = value
    body.update(params.get("extra_body") or {})
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _poll_cap() -> float:
    """Longest wait between two polls of a batch: ``SYNTHGEN_BATCH_POLL_SECONDS``, else 60."""
    raw = os.environ.get("SYNTHGEN_BATCH_POLL_SECONDS", "").strip()
    try:
        seconds = float(raw) if raw else 60.0
    except ValueError:
        raise ConfigError(
            f"SYNTHGEN_BATCH_POLL_SECONDS={raw!r} is not a number",
            hint="seconds between batch polls, e.g. 60",
        ) from None
    return max(0.01, seconds)


def _failure(exc: Exception, what: str) -> Exception:
    """Ours as they are; anything else a failure of the items waiting on it, never a crash of the run."""
    if isinstance(exc, SynthgenError):
        return exc
    return CompletionFailed(f"{what}: {type(exc).__name__}: {exc}"[:600], reason="batch_error", attempts=1)


@dataclass
class BatchStats:
    """What this process did with batches (run.json says it; the journal has every invocation's)."""

    waves: int = 0  # batches created
    requests: int = 0  # request lines submitted, resubmissions included
    resubmitted: int = 0  # requests a batch did not answer, sent again in a later wave
    attached: int = 0  # requests found in a batch an earlier invocation created (nothing paid again)
    answered: int = 0
    models: dict[str, int] = field(default_factory=dict)  # answered requests per model


@dataclass(eq=False)
class _Request:
    custom_id: str
    line: bytes
    future: asyncio.Future[dict[str, Any]]
    arrived: float
    resubmits: int = 0


@dataclass(eq=False)
class _Group:
    """Requests for one endpoint, key and model: the unit one batch file may hold."""

    sdk: openai.AsyncOpenAI
    profile: ModelProfile
    pending: deque[_Request] = field(default_factory=deque)
    size: int = 0
    last_arrival: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Tracked:
    """A batch on the provider's side and the requests of this process waiting on it."""

    batch: str
    group: _Group
    waiters: dict[str, _Request] = field(default_factory=dict)
    resumed: bool = False
    reported: bool = False
    task: asyncio.Task[None] | None = None


class BatchCollector:
    """Gathers requests into batches, journals, polls and resolves them (see the module docstring).

    ``journal`` is the RUN_DIR's batch journal (None: nothing to resume from, e.g. the Python API
    without a RUN_DIR). ``settle``: seconds without a new request before a wave goes out;
    ``max_age``: the longest a request waits to be submitted; ``poll``: the first wait between polls
    of a batch (doubling up to ``SYNTHGEN_BATCH_POLL_SECONDS``, default 60).
    """

    def __init__(
        self,
        journal: BatchJournal | None = None,
        *,
        settle: float = 0.5,
        max_age: float = 60.0,
        poll: float = 1.0,
    ) -> None:
        self.journal = journal
        self.settle, self.max_age = settle, max_age
        self.poll_cap = _poll_cap()
        self.poll = min(poll, self.poll_cap)
        self.stats = BatchStats()
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(
        self, sdk: openai.AsyncOpenAI, profile: ModelProfile, custom_id: str, line: bytes
    ) -> dict[str, Any]:
        """The chat-completion body the batch answered for this request line (see :func:`batch_line`)."""
        loop = asyncio.get_running_loop()
        request = _Request(custom_id, line, loop.create_future(), loop.time())
        group = self._group(sdk, profile)
        held = self.journal.holder.get(custom_id) if self.journal is not None else None
        if held is not None:
            self.stats.attached += 1
            self._attach(held, group, request, resumed=True)
        else:
            self._queue(group, request)
        return await request.future

    async def aclose(self) -> None:
        """Stop polling (the batches go on at the provider: a re-run picks them up) and close the journal."""
        tasks = [*self._tasks, *(g.task for g in self._groups.values() if g.task is not None)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.journal is not None:
            self.journal.close()

    # --- queueing and waves ------------------------------------------------------------------------

    def _group(self, sdk: openai.AsyncOpenAI, profile: ModelProfile) -> _Group:
        key = profile.limit_key()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(sdk, profile)
            group.task = asyncio.get_running_loop().create_task(self._waves(group))
        return group

    def _queue(self, group: _Group, request: _Request) -> None:
        group.pending.append(request)
        group.size += len(request.line)
        group.last_arrival = asyncio.get_running_loop().time()
        group.wake.set()

    async def _waves(self, group: _Group) -> None:
        """Submit the group's queued requests wave by wave, for as long as the run lasts."""
        loop = asyncio.get_running_loop()
        limit = group.profile.max_batch_requests
        while True:
            await group.wake.wait()
            group.wake.clear()
            while group.pending:
                now = loop.time()
                due = min(group.last_arrival + self.settle, group.pending[0].arrived + self.max_age)
                if len(group.pending) < limit and group.size < MAX_BATCH_BYTES and now < due:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(group.wake.wait(), due - now)
                    group.wake.clear()
                    continue
                wave = self._take(group, limit)
                if wave:
                    self._spawn(self._submit(group, wave))
                # not kept here: a wave's requests hold their answers until their items take them
                del wave

    @staticmethod
    def _take(group: _Group, limit: int) -> list[_Request]:
        """The next wave: queued requests up to ``limit`` and the file size OpenAI takes."""
        wave: list[_Request] = []
        size = 0
        while group.pending and len(wave) < limit and size + len(group.pending[0].line) <= MAX_BATCH_BYTES:
            request = group.pending.popleft()
            size += len(request.line)
            if not request.future.done():  # an item cancelled meanwhile asks for nothing
                wave.append(request)
        group.size -= size
        return wave

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self, group: _Group, wave: list[_Request]) -> None:
        """Upload the wave's file, create its batch and journal it before anything else happens."""
        sdk, profile = group.sdk, group.profile
        data = b"".join(r.line for r in wave)
        try:
            uploaded = await call(
                profile,
                lambda: sdk.files.create(
                    file=("synthgen-batch.jsonl", data, "application/jsonl"), purpose="batch"
                ),
            )
            created = await call(
                profile,
                lambda: sdk.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=ENDPOINT,
                    completion_window="24h",
                    metadata={"created_by": "synthgen", "model": profile.model[:500]},
                ),
            )
        except Exception as exc:
            failure = _failure(exc, "submitting a batch")
            for request in wave:
                if not request.future.done():
                    request.future.set_exception(failure)
            return
        if self.journal is not None:
            self.journal.submitted(
                created.id,
                input_file=uploaded.id,
                endpoint=profile.resolved_base_url,
                model=profile.model,
                custom_ids=[r.custom_id for r in wave],
            )
        self.stats.waves += 1
        self.stats.requests += len(wave)
        log.info("batch %s submitted: %d %s requests", created.id, len(wave), profile.model)
        for request in wave:
            self._attach(created.id, group, request, resumed=False)

    # --- polling and answers -----------------------------------------------------------------------

    def _attach(self, batch: str, group: _Group, request: _Request, *, resumed: bool) -> None:
        tracked = self._tracked.get(batch)
        if tracked is None:
            tracked = self._tracked[batch] = _Tracked(batch, group, resumed=resumed)
            self._spawn(self._watch(tracked))
        tracked.waiters[request.custom_id] = request

    async def _watch(self, tracked: _Tracked) -> None:
        """Poll one batch until it ends, then answer its waiters from its files; requeue the rest."""
        profile, sdk = tracked.group.profile, tracked.group.sdk
        if tracked.resumed:
            await asyncio.sleep(self.settle)  # let every resumed item attach before the first download
        delay = self.poll
        try:
            while tracked.waiters:
                batch = await call(profile, lambda: sdk.batches.retrieve(tracked.batch))
                if batch.status not in TERMINAL:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.poll_cap)
                    continue
                answered, errors, again = await self._collect(tracked, batch)
                leftover = [*again, *tracked.waiters.values()]
                tracked.waiters.clear()
                for request in leftover:
                    self._resubmit(tracked.group, request, batch.status, batch)
                record = self.journal.records.get(tracked.batch) if self.journal is not None else None
                if self.journal is not None and not tracked.reported and not (record and record.ended):
                    # the provider's counts: a resumed process may wait on only part of the batch
                    counts = batch.request_counts
                    self.journal.ended(
                        tracked.batch,
                        batch.status,
                        answered=counts.completed if counts is not None else answered,
                        errors=counts.failed if counts is not None else errors,
                        resubmitted=len(leftover),
                    )
                    tracked.reported = True
        except Exception as exc:
            failure = _failure(exc, f"batch {tracked.batch}")
            for request in tracked.waiters.values():
                if not request.future.done():
                    request.future.set_exception(failure)
            tracked.waiters.clear()
        finally:
            self._tracked.pop(tracked.batch, None)

    async def _collect(self, tracked: _Tracked, batch: Any) -> tuple[int, int, list[_Request]]:
        """Stream the output and error files, resolving each waiting request as its line is read."""
        answered = errors = 0
        again: list[_Request] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id or not tracked.waiters:
                continue
            try:
                async for entry in lines(tracked.group.sdk, tracked.group.profile, file_id):
                    if (request := tracked.waiters.pop(str(entry.get("custom_id")), None)) is None:
                        continue
                    outcome = self._answer(tracked, request, entry)
                    answered += outcome == "answered"
                    errors += outcome != "answered"
                    if outcome == "again":
                        again.append(request)
                    # let its item take the answer now: lines already buffered are read without a
                    # pause, and every body would otherwise wait in its future until the file ends
                    await asyncio.sleep(0)
            except openai.APIStatusError as exc:
                if not gone(exc):
                    raise
                log.warning(
                    "batch %s: file %s is gone (%s): its requests are sent again",
                    tracked.batch,
                    file_id,
                    exc.status_code,
                )
        return answered, errors, again

    def _answer(self, tracked: _Tracked, request: _Request, entry: dict[str, Any]) -> str:
        """Resolve ``request`` from its line: ``answered``, ``failed``, or ``again`` (next wave)."""
        if request.future.done():  # its item was cancelled meanwhile
            return "failed"
        response = entry.get("response") or {}
        body = response.get("body")
        status = response.get("status_code")
        if status == 200 and isinstance(body, dict):
            request.future.set_result(body)
            self.stats.answered += 1
            model = str(body.get("model") or tracked.group.profile.model)
            self.stats.models[model] = self.stats.models.get(model, 0) + 1
            return "answered"
        error = entry.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        if (
            code in ("batch_expired", "batch_cancelled")
            or status in _RETRY_STATUS
            or (isinstance(status, int) and status >= 500)
        ):
            return "again"
        message = error.get("message") if isinstance(error, dict) else str(error)
        text = scrub(str(message or entry)[:600], (tracked.group.profile.api_key_env,))
        request.future.set_exception(
            CompletionFailed(
                f"batch {tracked.batch} answered {status or code}: {text}",
                reason=f"http_{status}" if status else (code or "batch_error"),
                attempts=1,
            )
        )
        return "failed"

    def _resubmit(self, group: _Group, request: _Request, status: str, batch: Any) -> None:
        if request.future.done():
            return
        request.resubmits += 1
        if request.resubmits > _MAX_RESUBMITS:
            why = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
            request.future.set_exception(
                CompletionFailed(
                    f"no batch answered this request after {_MAX_RESUBMITS} waves (last batch "
                    f"{batch.id} {status}{': ' + why if why else ''})",
                    reason=f"batch_{status}",
                    attempts=request.resubmits,
                )
            )
            return
        self.stats.resubmitted += 1
        request.arrived = asyncio.get_running_loop().time()
        self._queue(group, request)
