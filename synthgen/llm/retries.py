"""Retry policy and error translation at the SDK boundary.

What is worth retrying (408, 409, 429, 5xx, timeouts, connection errors, ``x-should-retry: true``,
a 200 whose body is not a completion), how long to wait (the server's ``retry-after(-ms)`` plus up
to 25% jitter, so clients waiting on one rate limit do not retry in lockstep; else capped
exponential backoff with full jitter), and what a non-retryable status means for the user: the
profile field to fix (401/403/404, a rejected parameter, no json_schema support).
"""

from __future__ import annotations

import random

import openai
from tenacity import RetryCallState

from synthgen.errors import AuthenticationFailed, CompletionFailed, ProviderError
from synthgen.llm.profile import ModelProfile

__all__ = ["Malformed", "fail_fast", "failure_reason", "retry_after", "retryable", "wait"]

_RETRY_STATUS = {408, 409, 429}
_PER_ITEM_400 = ("context_length_exceeded", "content_policy_violation", "invalid_prompt", "content_filter")


class Malformed(Exception):
    """A 200 whose body is not a chat completion: transient on every server we have seen."""


def retryable(exc: BaseException) -> bool:
    """Transient failures; ``x-should-retry`` overrides the status either way."""
    if isinstance(exc, openai.APIStatusError):
        if exc.response.headers.get("x-should-retry") == "true":
            return True
        if exc.response.headers.get("x-should-retry") == "false":
            return False
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError | Malformed)


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` wins over ``retry-after``)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def wait(state: RetryCallState) -> float:
    """Server's retry-after plus up to 25% jitter, else capped exponential backoff with full jitter."""
    exc = state.outcome.exception() if state.outcome else None
    after = retry_after(exc)
    if after is not None:
        return min(after, 120.0) * (1.0 + random.random() * 0.25)
    return random.uniform(0, min(30.0, 0.25 * 2**state.attempt_number))


def failure_reason(exc: BaseException) -> str:
    """A short label for failure reports (``timeout``, ``rate_limited``, ``http_503``, ...)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, Malformed):
        return "malformed_response"
    if isinstance(exc, openai.APIStatusError):
        return "rate_limited" if exc.status_code == 429 else f"http_{exc.status_code}"
    return type(exc).__name__


def fail_fast(exc: openai.APIStatusError, profile: ModelProfile) -> Exception:
    """Translate a non-retryable status into the error that says what to fix."""
    where = f"models.{profile.name}" if profile.name else "profile"
    body = exc.body if isinstance(exc.body, dict) else {}
    param = str(body.get("param") or "")
    code = str(body.get("code") or "")
    message = str(body.get("message") or exc.message)
    if exc.status_code in (401, 403):
        return AuthenticationFailed(
            f"{profile.resolved_base_url} answered {exc.status_code}: {message}",
            field=f"{where}.api_key_env",
            hint=f"check ${profile.api_key_env} holds a valid key for this endpoint",
        )
    if exc.status_code == 404:
        return ProviderError(
            f"{profile.resolved_base_url} has no model {profile.model!r} ({message})",
            field=f"{where}.model",
            hint="check the model name and base_url (vLLM/Ollama serve the name they were started with)",
        )
    if code in _PER_ITEM_400 or "context length" in message.lower():
        return CompletionFailed(message, reason=code or "context_length")
    for field in ("temperature", "top_p", "max_tokens", "seed", "stop", "reasoning_effort"):
        if param == field or f"'{field}'" in message:
            return ProviderError(
                f"{profile.model} rejected {field}: {message}",
                field=f"{where}.{field}",
                hint="remove it" + (" or use max_completion_tokens" if field == "max_tokens" else ""),
            )
    if "response_format" in param or "json_schema" in message:
        return ProviderError(
            f"{profile.resolved_base_url} does not support json_schema outputs: {message}",
            field=f"{where}.structured_output",
            hint="set structured_output: json_object (validated locally instead)",
        )
    return ProviderError(f"{profile.resolved_base_url} answered {exc.status_code}: {message}", field=where)
