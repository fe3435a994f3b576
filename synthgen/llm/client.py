"""ChatClient: every LLM call synthgen makes, over ``openai.AsyncOpenAI``.

Why not the bare SDK: its retries obey ``retry-after`` without jitter (clients waiting on a rate
limit retry in lockstep), a 200 whose body is not JSON raises with no retry, and it has no notion of
per-account limits, caching, schema re-asks or cost. Here the SDK's retries are off and tenacity
owns them; the schema goes out as the SDK's own strict conversion of the pydantic model
(``pydantic_function_tool``, built once per class), the body through ``AsyncOpenAI.post`` (:mod:`wire`:
``create`` re-walks every message through a typed-dict transform, ``parse`` also rebuilds the schema;
see benchmarks/README.md), and the answer is validated here; :mod:`limits`, :mod:`cache` and
:mod:`usage` wrap each attempt. A request that still
has no valid answer raises :class:`CompletionFailed` with a reason: callers record it as a failure
of one work item, never a crash of the run. Configuration mistakes (401/403/404, a parameter the
model rejects) raise :class:`ProviderError` at once: retrying cannot fix them.

One module on purpose (~450 lines): a request's life (cache, limits, attempt, re-ask, enlarge, count)
reads as one story; its parts with a concept of their own live beside it (retries, structured,
limits, cache, usage, probe, endpoints, batch, the body on the wire: wire, reading one answer:
answer, and how each server is spoken to: dialect).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Any, TypeVar

import httpx2
import openai
import pydantic
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from synthgen.errors import CompletionFailed, ProviderError
from synthgen.llm.answer import Completion, Invalid, cut_message, read_answer
from synthgen.llm.batch import BatchCollector, batch_line, batch_price_quote
from synthgen.llm.cache import ResponseCache, fingerprint
from synthgen.llm.dialect import Dialects
from synthgen.llm.endpoints import EndpointPool
from synthgen.llm.limits import KeyLimiter, Limits
from synthgen.llm.offline import OFFLINE_VERSION
from synthgen.llm.probe import Capabilities
from synthgen.llm.profile import ModelProfile, Prices
from synthgen.llm.retries import Malformed, fail_fast, gave_up, retry_after, retryable, unreachable, wait
from synthgen.llm.structured import json_schema, reask_message, with_schema_note
from synthgen.llm.usage import TokenUsage, UsageMeter, count_message_tokens, price_for
from synthgen.llm.wire import Post, poster, read_completion

__all__ = ["ChatClient", "Completion", "Message"]

log = logging.getLogger("synthgen.llm.client")

Message = dict[str, str]
SchemaT = TypeVar("SchemaT", bound=pydantic.BaseModel)
_MAX_ENLARGEMENTS = 2  # a truncated answer is asked again with 2x, then 4x the token limit


class ChatClient:
    """Async chat completions with limits, retries, schema re-asks, a cache and a usage meter.

    One instance per run; it owns one ``AsyncOpenAI`` per endpoint with an HTTP pool sized to the
    endpoint's concurrency. Use as ``async with ChatClient(...) as client``.
    """

    def __init__(
        self,
        *,
        cache: ResponseCache | None = None,
        meter: UsageMeter | None = None,
        limits: Limits | None = None,
        offline: bool = False,
        batches: BatchCollector | None = None,
    ) -> None:
        self.cache = cache
        # profiles with ``batch: true`` send through it (one is made on first use when none is handed in)
        self.batches = batches
        self.meter = meter if meter is not None else UsageMeter()
        self.limits = limits if limits is not None else Limits()
        self.offline = offline
        self._sdk: dict[tuple[str, str, str, float], openai.AsyncOpenAI] = {}
        self._inflight: dict[str, asyncio.Future[Completion]] = {}
        self._json_mode_noted: set[tuple[str, str, str]] = set()
        self._unreachable_noted: set[str] = set()
        # what each (base URL, model) does: handed in (doctor, preflight) or read from the probe cache
        self.dialects = Dialects(offline=offline)  # how each server is spoken to: modes, parameters
        self._pools: dict[tuple[tuple[str, ...], str, str], EndpointPool] = {}  # profiles listing servers

    def use(self, caps: Capabilities) -> None:
        """Decide ``structured_output: auto`` and the token parameter from this probe result."""
        self.dialects.use(caps)

    def capabilities(self, profile: ModelProfile) -> Capabilities | None:
        """The probe result for ``profile``'s server: handed in, else the cache's (no request here)."""
        return self.dialects.capabilities(profile)

    def structured_mode(self, profile: ModelProfile) -> str:
        """The mode a schema request goes out in (:meth:`Dialects.structured_mode`)."""
        return self.dialects.structured_mode(profile)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every HTTP pool and the response cache (its SQLite connection)."""
        if self.batches is not None:
            await self.batches.aclose()  # stops polling: the batches go on and a re-run picks them up
        clients, self._sdk = list(self._sdk.values()), {}
        for sdk in clients:
            await sdk.close()
        if self.cache is not None:
            self.cache.close()

    def _client(self, profile: ModelProfile) -> openai.AsyncOpenAI:
        base_url = profile.resolved_base_url
        key = (base_url, profile.api_key_env, profile.http_backend, profile.timeout)
        sdk = self._sdk.get(key)
        if sdk is None:
            limits = httpx2.Limits(
                max_connections=profile.max_concurrency, max_keepalive_connections=profile.max_concurrency
            )
            timeout = httpx2.Timeout(profile.timeout, connect=min(10.0, profile.timeout))
            http_client: httpx2.AsyncClient
            if self.offline:
                from synthgen.llm.offline import OfflineTransport

                http_client = httpx2.AsyncClient(transport=OfflineTransport(), timeout=timeout)
            elif profile.http_backend == "aiohttp":
                http_client = openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
            else:
                http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)
            api_key = "offline" if self.offline else profile.api_key()
            sdk = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout, http_client=http_client
            )
            self._sdk[key] = sdk
        return sdk

    def limiter(self, profile: ModelProfile) -> KeyLimiter:
        # the offline provider is not the account the limits describe: pacing it at a real RPM made an
        # offline run (or the estimate before a paid one) of a few thousand calls take many minutes
        return self.limits.get(
            profile.limit_key(),
            max_concurrency=profile.max_concurrency,
            requests_per_minute=None if self.offline else profile.requests_per_minute,
            tokens_per_minute=None if self.offline else profile.tokens_per_minute,
        )

    def pool(self, profile: ModelProfile) -> EndpointPool | None:
        """The endpoint pool of a profile that lists several servers of its model; ``None`` for one URL.

        Offline, every profile goes to the embedded provider: there is nothing to spread.
        """
        if self.offline or not isinstance(profile.base_url, tuple):
            return None
        key = (profile.endpoints, profile.model, profile.api_key_env)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = EndpointPool(profile)
        return pool

    def request_key(
        self,
        messages: Sequence[Message],
        profile: ModelProfile,
        schema: type[pydantic.BaseModel] | None,
        sample: int,
        version: str,
    ) -> str:
        return fingerprint(
            {
                "base_url": profile.resolved_base_url,
                "model": profile.model,
                "messages": list(messages),
                "sampling": profile.sampling(),
                "extra_body": profile.extra_body,
                "structured_output": self.structured_mode(profile) if schema else None,
                "schema": json_schema(schema) if schema else None,
                "schema_name": schema.__name__ if schema else None,
                "version": version,
                "sample": sample,
                "offline": OFFLINE_VERSION if self.offline else False,
            }
        )

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        profile: ModelProfile,
        schema: type[SchemaT] | None = None,
        sample: int = 0,
        version: str = "",
        call: str = "",
    ) -> Completion:
        """One answer for ``messages``; ``sample`` picks the k-th of K independent samples.

        ``version`` is the caller's (generator's) version: bumping it invalidates its cache rows.
        ``call`` names the request's role (student, assistant, judge, candidate) in failure messages
        only; it is not part of the cache key.
        """
        key = self.request_key(messages, profile, schema, sample, version)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            parsed = schema.model_validate_json(hit["content"]) if schema else None
            usage = TokenUsage.from_dict(hit["usage"])
            self.meter.record_cached(hit["model"], usage)
            return Completion(
                content=hit["content"],
                parsed=parsed,
                model=hit["model"],
                system_fingerprint=hit.get("system_fingerprint"),
                finish_reason=hit["finish_reason"],
                usage=usage,
                cached=True,
                attempts=0,
                key=key,
            )
        if (pending := self._inflight.get(key)) is not None:
            # the same request is already on the wire: share its answer instead of paying twice
            shared = await asyncio.shield(pending)
            self.meter.record_cached(shared.model, shared.usage)
            return dataclasses.replace(shared, cached=True, attempts=0)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._complete(key, messages, profile, schema, sample, call)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        else:
            future.set_result(completion)
            return completion
        finally:
            del self._inflight[key]

    async def _complete(
        self,
        key: str,
        messages: Sequence[Message],
        profile: ModelProfile,
        schema: type[SchemaT] | None,
        sample: int,
        call: str = "",
    ) -> Completion:
        conversation = list(messages)
        params = self.dialects.params(profile, schema, sample)
        attempts = sends = 0
        reasks = enlargements = 0  # separate budgets: an invalid answer is re-asked with the error,
        while True:  # a truncated one is asked again with twice the token limit, never unchanged
            try:
                # custom_id: the key, then key.1, key.2 for re-asks; offline, only a simulation's collector
                if profile.batch and (self.batches is not None or not self.offline):
                    raw, n = await self._batched(
                        key if not sends else f"{key}.{sends}", conversation, profile, schema, params
                    )
                else:
                    raw, n = await self._send(conversation, profile, schema, params, sample)
                sends += 1
            except ProviderError as exc:
                if not self.dialects.fall_back(exc, profile, schema):
                    raise
                attempts += 1
                params = self.dialects.params(profile, schema, sample)
                continue
            attempts += n
            try:
                completion = self._validate(raw, schema, profile, key, attempts)
            except Invalid as invalid:
                if invalid.reason in ("refusal", "content_filter"):
                    raise CompletionFailed(invalid.detail, reason=invalid.reason, attempts=attempts) from None
                if invalid.reason == "length":
                    field = "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"
                    if field not in params or enlargements == _MAX_ENLARGEMENTS:
                        raise CompletionFailed(
                            cut_message(invalid.detail, profile, field, params.get(field), call),
                            reason="length",
                            attempts=attempts,
                        ) from None
                    enlargements += 1
                    params = {**params, field: params[field] * 2}
                    continue
                if reasks == profile.max_reasks:
                    raise CompletionFailed(invalid.detail, reason=invalid.reason, attempts=attempts) from None
                reasks += 1
                conversation = [
                    *conversation,
                    {"role": "assistant", "content": invalid.content},
                    {"role": "user", "content": reask_message(invalid.detail, schema)},
                ]
                continue
            if self.cache is not None:
                self.cache.put(
                    key,
                    completion.model,
                    {
                        "content": completion.content,
                        "model": completion.model,
                        "system_fingerprint": completion.system_fingerprint,
                        "finish_reason": completion.finish_reason,
                        "usage": {**completion.usage.__dict__},
                    },
                )
            return completion

    async def _send(
        self,
        messages: list[Message],
        profile: ModelProfile,
        schema: type[pydantic.BaseModel] | None,
        params: dict[str, Any],
        sample: int,
    ) -> tuple[Any, int]:
        """One paid response, after retries; returns (raw response, attempts)."""
        pool = self.pool(profile)
        if schema is not None and self.structured_mode(profile) == "json_object":
            if profile.limit_key() not in self._json_mode_noted:
                self._json_mode_noted.add(profile.limit_key())
                log.warning(
                    "profile %r uses json_object mode: the schema is stated in the prompt and validated locally "
                    "(invalid answers are re-asked), since the server does not enforce it",
                    profile.name or profile.model,
                )
            messages = with_schema_note(messages, schema)
        attempts = 0

        def note_unreachable(state: RetryCallState) -> None:
            # retries of an unreachable endpoint are silent for minutes otherwise: say once which and why
            exc = state.outcome.exception() if state.outcome else None
            url = profile.resolved_base_url
            # (a pool says itself which of its servers went out of rotation)
            if (
                pool is None
                and isinstance(exc, openai.APIConnectionError)
                and url not in self._unreachable_noted
            ):
                self._unreachable_noted.add(url)
                log.warning(
                    "%s; retrying (up to %d attempts)", unreachable(exc, profile), profile.max_attempts
                )

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(profile.max_attempts) | stop_after_delay(profile.max_retry_seconds),
            wait=wait if pool is None else pool.wait(wait),
            before_sleep=note_unreachable,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with self._attempt(profile, pool, messages, params) as (call, limiter, sent_at):
                        try:
                            raw = await call(messages)
                        except (openai.APITimeoutError, asyncio.CancelledError):
                            self._unanswered(profile)
                            raise
                        except openai.APIStatusError as exc:
                            # a 429 (or a 503 that asks to wait) retries alone unless it shows the
                            # account at its limit: then the limiter pauses the key, once
                            if exc.status_code == 429 or (exc.status_code == 503 and retry_after(exc)):
                                limiter.refused(sent_at, retry_after(exc), exc.response.headers)
                            raise
                        limiter.learn(raw.headers)
                    return read_completion(raw.content), attempts
        # not chained to what a server sent (a status error's body, an unparseable 200): a printed
        # traceback would quote it, with any key it echoes; the messages carry its scrubbed text
        except openai.APIStatusError as exc:
            raise (
                gave_up(exc, profile, attempts) if retryable(exc) else fail_fast(exc, profile, attempts)
            ) from None
        except Malformed as exc:
            raise gave_up(exc, profile, attempts) from None
        except openai.APIConnectionError as exc:
            raise gave_up(exc, profile, attempts) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _attempt(
        self,
        profile: ModelProfile,
        pool: EndpointPool | None,
        messages: list[Message],
        params: dict[str, Any],
    ) -> AsyncIterator[tuple[Post, KeyLimiter, float]]:
        """One attempt's server (the profile's, or one leased from its pool: each attempt may go to another),
        held under that server's limits; yields its post, its limiter and when the request went out."""
        with nullcontext(profile) if pool is None else pool.lease() as target:
            limiter = self.limiter(target)
            # a token estimate costs a BPE encoding of every message: only pay it when tokens are limited
            estimate = (
                count_message_tokens(messages)
                + int(params.get("max_tokens") or params.get("max_completion_tokens") or 0)
                if limiter.tokens_per_minute
                else 0
            )
            async with limiter.slot(estimate) as sent_at:
                yield poster(self._client(target), params), limiter, sent_at

    async def _batched(
        self,
        custom_id: str,
        messages: list[Message],
        profile: ModelProfile,
        schema: type[pydantic.BaseModel] | None,
        params: dict[str, Any],
    ) -> tuple[Any, int]:
        """One answer through the Batch API (:mod:`synthgen.llm.batch`): same body, no HTTP call here."""
        if schema is not None and self.structured_mode(profile) == "json_object":
            messages = with_schema_note(messages, schema)
        if self.batches is None:
            self.batches = BatchCollector()
        body = await self.batches.send(
            self._client(profile), profile, custom_id, batch_line(custom_id, messages, params)
        )
        return openai.types.chat.ChatCompletion.construct(**body), 1

    def _unanswered(self, profile: ModelProfile) -> None:
        """A request sent whose answer we stopped waiting for: the server may bill it, so it counts
        as a request of unknown tokens (``unanswered``), never as nothing."""
        self.meter.record(profile.model, TokenUsage(requests=1, unanswered=1), self._prices(profile))

    def _validate(
        self,
        response: Any,
        schema: type[pydantic.BaseModel] | None,
        profile: ModelProfile,
        key: str,
        attempts: int,
    ) -> Completion:
        """Record usage of a paid response, then check it; raise :class:`Invalid` to re-ask."""
        if not isinstance(response, openai.types.chat.ChatCompletion):
            # a raw response whose content failed the SDK's parse: rebuild the plain completion
            response = openai.types.chat.ChatCompletion.construct(**json.loads(response.http_response.text))
        usage = TokenUsage.from_api(response.usage)
        self.meter.record(response.model or profile.model, usage, self._prices(profile))
        return read_answer(response, usage, schema, profile, key=key, attempts=attempts)

    def _prices(self, profile: ModelProfile) -> Prices | None:
        if self.offline:
            return Prices(input=0, output=0)
        if profile.batch:
            return batch_price_quote(profile.model, profile.prices)[0]
        return price_for(profile.model, profile.prices)
