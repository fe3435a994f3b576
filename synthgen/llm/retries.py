"""Retry policy and error translation at the SDK boundary.

What is worth retrying (408, 409, 429 unless the account is out of quota, 5xx, timeouts, connection
errors, ``x-should-retry: true``, a 200 whose body is not a completion), how long to wait (the
server's ``retry-after(-ms)`` plus up to 25% jitter, so clients waiting on one rate limit do not
retry in lockstep; else capped exponential backoff with full jitter), and what a non-retryable
status means for the user: the profile field to fix (401/403/404, a rejected parameter, no json_schema support).

Every message built here from what a server sent goes through :func:`synthgen.llm.secrets.scrub`
(servers that quote the Authorization header in an error body would otherwise put the key in the
terminal, journals and failure reports), and a connection failure names the URL, the profile and
what happened (refused, DNS, timeout), read from the exception's causes: the SDK's words ("Connection
error.", and "Request timed out." for a refused connection over aiohttp) name none of them.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterator

import httpx2
import openai
from tenacity import RetryCallState

from synthgen.errors import AuthenticationFailed, CompletionFailed, ProviderError
from synthgen.llm.profile import ModelProfile
from synthgen.llm.secrets import scrub

__all__ = [
    "Malformed",
    "fail_fast",
    "failure_reason",
    "gave_up",
    "named_parameter",
    "retry_after",
    "retryable",
    "server_text",
    "unreachable",
    "wait",
]

_RETRY_STATUS = {408, 409, 429}
_PER_ITEM_400 = ("context_length_exceeded", "content_policy_violation", "invalid_prompt", "content_filter")

#: Request parameters a server may name when it rejects a request, and the profile field behind each
#: (``extra_body`` for what synthgen only sends when a recipe puts it there). Distinctive names are
#: found anywhere in the server's words; short common words (``n``, ``seed``, ``stop``, ``model``)
#: only as the error's ``param``, a validation error's location, or quoted.
_PARAMETERS = {
    "response_format": "structured_output",
    "json_schema": "structured_output",
    "max_completion_tokens": "max_completion_tokens",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "reasoning_effort": "reasoning_effort",
    "seed": "seed",
    "stop": "stop",
    "model": "model",
    "n": "extra_body",
    "logprobs": "extra_body",
    "presence_penalty": "extra_body",
    "frequency_penalty": "extra_body",
}
_COMMON_WORDS = frozenset({"seed", "stop", "model", "n"})
_MAX_TEXT = 600  # a plain-text error page is quoted, not printed whole


#: 429 codes that mean the account has no credit or quota left, not that it sent too fast
_NO_QUOTA = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})


def _code(exc: openai.APIStatusError) -> str:
    """The error body's ``code`` (OpenAI: ``rate_limit_exceeded``, ``insufficient_quota``...)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    if isinstance(body.get("error"), dict):  # not unwrapped by the SDK (a proxy's shape)
        body = body["error"]
    return str(body.get("code") or "")


class Malformed(Exception):
    """A 200 whose body is not a chat completion: transient on every server we have seen."""


def retryable(exc: BaseException) -> bool:
    """Transient failures; ``x-should-retry`` overrides the status either way."""
    if isinstance(exc, openai.APIStatusError):
        if exc.response.headers.get("x-should-retry") == "true":
            return True
        if exc.response.headers.get("x-should-retry") == "false":
            return False
        if exc.status_code == 429 and _code(exc) in _NO_QUOTA:
            return False  # out of credit: no wait brings it back (see fail_fast)
        if exc.status_code in _RETRY_STATUS:
            return True
        # a 5xx that names a request parameter is a configuration error in disguise (llama-cpp-python
        # answers json_schema with a 500): retrying it 8 times cannot fix it
        return exc.status_code >= 500 and named_parameter(exc) is None
    return isinstance(exc, openai.APIConnectionError | Malformed)


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` wins over ``retry-after``)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    # LiteLLM forwards the upstream provider's wait as llm_provider-retry-after
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0), ("llm_provider-retry-after", 1.0)):
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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (``__cause__``, else ``__context__``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connection_kind(exc: BaseException) -> str:
    """``dns``, ``refused``, ``timeout`` or ``connection``, from the OS error under the SDK's wrappers.

    Refusals and DNS failures are looked for first: aiohttp's adapter maps every connector error,
    a refusal included, to ``ConnectTimeout``, so only the builtin ``TimeoutError`` means a timeout.
    """
    chain = list(_chain(exc))
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused"
    bare_timeout = chain == [exc] and isinstance(exc, openai.APITimeoutError)  # no cause to read
    if bare_timeout or any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    return "connection"


def unreachable(exc: BaseException, profile: ModelProfile) -> str:
    """Which endpoint and profile could not be reached, and how, for an ``APIConnectionError``."""
    url = profile.resolved_base_url
    who = f"profile {profile.name or profile.model!r}"
    kind = _connection_kind(exc)
    detail = str(list(_chain(exc))[-1]) or type(exc).__name__
    if kind == "dns":
        host = httpx2.URL(url).host
        return f"{url} ({who}): DNS cannot resolve the host {host!r} ({detail})"
    if kind == "refused":
        return f"{url} ({who}): connection refused (is the server running on that host and port?)"
    if kind == "timeout":
        connecting = any(isinstance(e, httpx2.ConnectTimeout) for e in _chain(exc))
        limit = min(10.0, profile.timeout) if connecting else profile.timeout
        what = "did not accept a connection" if connecting else "did not answer"
        return (
            f"{url} ({who}) {what} within {limit:g} s (timed out; raise the profile's timeout if it is slow)"
        )
    return f"{url} ({who}): cannot connect ({detail})"


def _body_text(body: object) -> str:
    """The message in an error body of any shape real servers send.

    ``{"error": {"message": ...}}`` arrives here unwrapped by the SDK (its ``code`` a string for
    OpenAI, an int for vLLM, null for Ollama); FastAPI servers send ``{"detail": "..."}`` or
    ``{"detail": [{"loc": [...], "msg": ...}]}``; some send ``{"error": "..."}`` or plain text.
    """
    if isinstance(body, str):
        return body
    if not isinstance(body, dict):
        return ""
    for key in ("message", "error", "msg"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    if isinstance(body.get("error"), dict):
        return _body_text(body["error"])
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or () if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return ""


def server_text(exc: openai.APIStatusError, profile: ModelProfile) -> str:
    """The server's own words, without any secret it may quote (the key it was sent, above all)."""
    text = " ".join(_body_text(exc.body).split()) or exc.message
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "..."
    return scrub(text, (profile.api_key_env,))


def named_parameter(exc: openai.APIStatusError) -> str | None:
    """The request parameter an error body blames (``response_format``, ``max_tokens``, ...), if any."""
    body = exc.body
    param = str(body.get("param") or "") if isinstance(body, dict) else ""
    locs: set[str] = set()
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        for item in body["detail"]:
            if isinstance(item, dict):
                locs.update(str(p) for p in item.get("loc") or ())
    text = _body_text(body)
    for name in _PARAMETERS:
        if param == name or param.startswith(f"{name}.") or name in locs:
            return name
        if name in _COMMON_WORDS:
            if any(f"{q}{name}{q}" in text for q in ("'", '"', "`")):
                return name
        elif re.search(rf"(?<![A-Za-z_]){name}(?![A-Za-z_])", text):
            return name
    return None


def gave_up(exc: BaseException, profile: ModelProfile, attempts: int) -> CompletionFailed:
    """The failure of one request whose transient errors outlasted the retries."""
    if isinstance(exc, openai.APIStatusError):
        what = f"{profile.resolved_base_url} answered {exc.status_code}: {server_text(exc, profile)}"
    elif isinstance(exc, openai.APIConnectionError):
        what = unreachable(exc, profile)
    else:
        what = scrub(str(exc), (profile.api_key_env,))
    return CompletionFailed(
        f"gave up after {attempts} attempts: {what}", reason=failure_reason(exc), attempts=attempts
    )


def failure_reason(exc: BaseException) -> str:
    """A short label for failure reports (``timeout``, ``rate_limited``, ``http_503``, ...)."""
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError too: a refusal over aiohttp is one
        return "timeout" if _connection_kind(exc) == "timeout" else "connection"
    if isinstance(exc, Malformed):
        return "malformed_response"
    if isinstance(exc, openai.APIStatusError):
        return "rate_limited" if exc.status_code == 429 else f"http_{exc.status_code}"
    return type(exc).__name__


def fail_fast(exc: openai.APIStatusError, profile: ModelProfile, attempts: int = 1) -> Exception:
    """Translate a non-retryable status into the error that says what to fix."""
    where = f"models.{profile.name}" if profile.name else "profile"
    body = exc.body if isinstance(exc.body, dict) else {}
    code = str(body.get("code") or "")
    message = server_text(exc, profile)
    if exc.status_code in (401, 403):
        return AuthenticationFailed(
            f"{profile.resolved_base_url} answered {exc.status_code}: {message}",
            field=f"{where}.api_key_env",
            hint=f"check ${profile.api_key_env} holds a valid key for this endpoint",
        )
    if exc.status_code == 429 and _code(exc) in _NO_QUOTA:
        return ProviderError(
            f"{profile.resolved_base_url} answered 429 {_code(exc)}: {message}",
            field=f"{where}.api_key_env",
            hint=f"the account of ${profile.api_key_env} has no credit or quota left: check its plan and billing "
            "(waiting does not help, so synthgen stops instead of retrying)",
        )
    if exc.status_code == 404:
        return ProviderError(
            f"{profile.resolved_base_url} has no model {profile.model!r} ({message})",
            field=f"{where}.model",
            hint="check the model name and base_url (vLLM/Ollama serve the name they were started with)",
        )
    if code in _PER_ITEM_400 or "context length" in message.lower():
        return CompletionFailed(message, reason=code or "context_length", attempts=attempts)
    name = named_parameter(exc)
    if name in ("response_format", "json_schema"):
        return ProviderError(
            f"{profile.resolved_base_url} rejects structured_output: json_schema "
            f"(it answered {exc.status_code}: {message})",
            field=f"{where}.structured_output",
            hint="set structured_output: json_object (the schema goes into the prompt and is validated "
            "locally) or auto (synthgen probes the server and picks); `synthgen doctor RECIPE` shows what works",
        )
    if name is not None:
        field = _PARAMETERS[name]
        fix = {
            "max_tokens": "remove it or use max_completion_tokens",
            "max_completion_tokens": "use max_tokens instead",
            "model": "check the model name the server serves",
            "extra_body": f"remove {name!r} from extra_body",
        }.get(field, "remove it")
        return ProviderError(
            f"{profile.resolved_base_url} rejected {name} ({profile.model}) with {exc.status_code}: {message}",
            field=f"{where}.{field}",
            hint=fix,
        )
    return ProviderError(f"{profile.resolved_base_url} answered {exc.status_code}: {message}", field=where)
