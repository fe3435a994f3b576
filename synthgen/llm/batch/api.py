"""The Files and Batches API calls, retried and translated as a completion's are.

Transient failures (408, 409, 429, 5xx, connection errors, ``x-should-retry``) are retried with the
client's jittered backoff; what is left becomes the same :class:`~synthgen.errors.CompletionFailed`
or :class:`~synthgen.errors.ProviderError` an online call would raise, with the server's words
scrubbed of secrets. A batch file is read line by line off the wire; a download cut in the middle is
started again and the caller skips what it already took.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from synthgen.llm.profile import ModelProfile
from synthgen.llm.retries import fail_fast, gave_up, retryable, wait

__all__ = ["call", "gone", "lines"]

log = logging.getLogger("synthgen.llm.batch")
T = TypeVar("T")


def _retrying(profile: ModelProfile) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(profile.max_attempts),
        wait=wait,
        reraise=True,
    )


def _translated(exc: Exception, profile: ModelProfile, attempts: int) -> Exception:
    if isinstance(exc, openai.APIStatusError):
        return gave_up(exc, profile, attempts) if retryable(exc) else fail_fast(exc, profile, attempts)
    if isinstance(exc, openai.APIConnectionError):
        return gave_up(exc, profile, attempts)
    return exc


async def call(profile: ModelProfile, request: Callable[[], Awaitable[T]]) -> T:
    """One Files/Batches API call (upload, create, retrieve), retried; errors translated."""
    attempts = 0
    try:
        async for attempt in _retrying(profile):
            with attempt:
                attempts += 1
                return await request()
    except (openai.APIStatusError, openai.APIConnectionError) as exc:
        raise _translated(exc, profile, attempts) from None
    raise AssertionError("unreachable")  # pragma: no cover


def gone(exc: BaseException) -> bool:
    """A file the provider no longer has (404, 410: output files expire): its answers must be bought again."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (404, 410)


async def lines(
    sdk: openai.AsyncOpenAI, profile: ModelProfile, file_id: str
) -> AsyncIterator[dict[str, Any]]:
    """The JSON lines of a batch file, streamed (never the whole file in memory). A download that
    fails is started again from the top, up to the profile's attempts: callers skip lines they took."""
    attempts = 0
    try:
        async for attempt in _retrying(profile):
            with attempt:
                attempts += 1
                async with sdk.files.with_streaming_response.content(file_id) as response:
                    async for line in response.iter_lines():
                        if not line.strip():
                            continue
                        try:
                            entry = json.loads(line)
                        except json.JSONDecodeError:
                            log.warning("batch file %s: a line that is not JSON was skipped", file_id)
                            continue
                        if isinstance(entry, dict):
                            yield entry
    except (openai.APIStatusError, openai.APIConnectionError) as exc:
        if gone(exc):
            raise
        raise _translated(exc, profile, attempts) from None
