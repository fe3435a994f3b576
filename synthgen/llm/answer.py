"""Reading one answer: a paid chat completion becomes a :class:`Completion`, or an :class:`Invalid`
with the reason the client acts on (re-ask with the error, enlarge the token limit, or give up on a
refusal or a content filter). Usage is recorded by the client before the answer is read, so an
answer that fails here is still paid for in the accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from synthgen.llm.profile import ModelProfile
from synthgen.llm.secrets import scrub
from synthgen.llm.structured import describe
from synthgen.llm.usage import TokenUsage

__all__ = ["Completion", "Invalid", "cut_message", "read_answer"]


@dataclass(frozen=True)
class Completion:
    """One validated answer. ``parsed`` is the schema instance for structured requests."""

    content: str
    parsed: Any
    model: str
    system_fingerprint: str | None
    finish_reason: str
    usage: TokenUsage
    cached: bool
    attempts: int
    key: str


class Invalid(Exception):
    """An answer that parsed as a completion but not as what was asked; ``reason`` says what to do."""

    def __init__(self, reason: str, detail: str, content: str) -> None:
        self.reason, self.detail, self.content = reason, detail, content
        super().__init__(detail)


def read_answer(
    response: Any,
    usage: TokenUsage,
    schema: type[pydantic.BaseModel] | None,
    profile: ModelProfile,
    *,
    key: str,
    attempts: int,
) -> Completion:
    """The answer of ``response`` (an SDK ChatCompletion), checked; raise :class:`Invalid` otherwise."""
    choice = response.choices[0] if response.choices else None
    if choice is None:
        raise Invalid("empty", "the response has no choices", "")
    message = choice.message
    # a server that echoes the request's key into an answer must not get it into the cache or rows
    content = message.content or ""
    secret_free = scrub(content, (profile.api_key_env,), shapes=False)
    parsed = getattr(message, "parsed", None) if secret_free == content else None
    content = secret_free
    if getattr(message, "refusal", None):
        refusal = scrub(str(message.refusal), (profile.api_key_env,))
        raise Invalid("refusal", f"the model refused: {refusal}", "")
    if choice.finish_reason == "content_filter":
        raise Invalid("content_filter", "the provider's content filter stopped the answer", content)
    if choice.finish_reason == "length":
        extra = message.model_extra or {}
        thinking = any(extra.get(f) for f in ("reasoning", "reasoning_content")) or usage.reasoning_tokens
        if not content.strip() and thinking:
            raise Invalid("length", "the model's thinking used the whole token budget before answering", "")
        raise Invalid("length", "the answer was cut", content)
    if schema is not None and parsed is None:
        try:
            parsed = schema.model_validate_json(content)
        except pydantic.ValidationError as exc:
            reason = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
            raise Invalid(reason, describe(exc), content) from None
    return Completion(
        content=content,
        parsed=parsed,
        model=response.model or profile.model,
        system_fingerprint=response.system_fingerprint,
        finish_reason=choice.finish_reason or "stop",
        usage=usage,
        cached=False,
        attempts=attempts,
        key=key,
    )


def cut_message(detail: str, profile: ModelProfile, field: str, limit: object, call: str = "") -> str:
    """A ``length`` failure that names the profile, the call, the limit reached and the field to raise."""
    where = f"models.{profile.name}" if profile.name else "the profile"
    what = f"{where} ({call} call)" if call else where
    if limit is None:
        return f"{what}: {detail} at the server's default token limit; set {where}.max_tokens"
    return f"{what}: {detail} at {field}={limit}; raise {where}.{field}"
