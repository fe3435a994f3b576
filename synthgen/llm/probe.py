"""Know the server: what an OpenAI-compatible endpoint really does with the parameters synthgen sends.

Why: servers bend the protocol silently. llama-cpp-python answers ``json_schema`` with a 500,
``transformers serve`` ignores ``response_format`` and ``temperature`` (200, greedy), Ollama ignores
``max_completion_tokens``, reasoning models put their text in ``reasoning`` or ``reasoning_content``.
A handful of tiny requests per (base URL, model) finds out, so ``structured_output: auto`` can pick
``json_schema`` where the server enforces it and ``json_object`` + the schema in the prompt + local
validation elsewhere. Results are cached in ``$SYNTHGEN_HOME/servers.json`` for a day.

The probe's requests are not dataset spend: they are counted in the :class:`Capabilities` they
produce (``probe_requests``, ``probe_tokens``), never in a run's usage meter or ledger. Offline runs
never probe: the offline provider enforces schemas.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai

from synthgen.llm.profile import ModelProfile
from synthgen.llm.retries import fail_fast, named_parameter, server_text, unreachable
from synthgen.paths import home

__all__ = ["MAX_AGE", "Capabilities", "cache_file", "cached", "capabilities", "offline_capabilities", "probe"]

MAX_AGE = 24 * 3600.0  # servers are upgraded or restarted with other flags: re-probe daily
_VERSION = 1
_MARKER = "zq_synthgen_probe_7"  # a key no model writes unprompted: only an enforcing server sends it
_SCHEMA = {
    "type": "object",
    "properties": {_MARKER: {"type": "string", "enum": ["probe-ok"]}},
    "required": [_MARKER],
    "additionalProperties": False,
}
_TINY = 8  # the token limit whose respect is checked

SchemaSupport = Literal["enforced", "ignored", "rejected", "unknown"]


@dataclass(frozen=True)
class Capabilities:
    """What one (base URL, model) does; ``structured_output`` and ``token_parameter`` are synthgen's choice."""

    base_url: str
    model: str
    reachable: bool
    error: str = ""
    json_schema: SchemaSupport = "unknown"
    json_object: bool | None = None
    sampling_varies: bool | None = None
    usage_reported: bool | None = None
    rate_limit_headers: bool | None = None
    reasoning_field: str | None = None
    max_completion_tokens_honoured: bool | None = None
    max_tokens_honoured: bool | None = None
    offline: bool = False
    probed_at: float = 0.0
    probe_requests: int = 0
    probe_tokens: int = 0

    @property
    def structured_output(self) -> Literal["json_schema", "json_object"]:
        """json_schema only where the server enforces it (or nothing is known: the client then falls
        back on a rejection); an ignored schema would be re-asked forever without the prompt note."""
        return "json_object" if self.json_schema in ("ignored", "rejected") else "json_schema"

    @property
    def token_parameter(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """The parameter that limits answers here: Ollama honours only ``max_tokens``."""
        return "max_tokens" if self.max_completion_tokens_honoured is False else "max_completion_tokens"

    def plan(self) -> str:
        """What synthgen will do on this server, in words."""
        if not self.reachable:
            return f"nothing until it answers ({self.error})"
        if self.structured_output == "json_schema":
            what = "json_schema" + (" (enforced by the server)" if self.json_schema == "enforced" else "")
        else:
            what = (
                f"json_object + the schema in the prompt, validated locally (json_schema {self.json_schema})"
            )
        if self.token_parameter == "max_tokens":
            what += "; max_tokens in place of max_completion_tokens"
        if self.reasoning_field:
            what += f"; reads thinking from {self.reasoning_field}"
        return what

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Capabilities:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def offline_capabilities(profile: ModelProfile) -> Capabilities:
    """The embedded offline provider: enforces schemas, honours every parameter; no request needed."""
    return Capabilities(
        base_url=profile.resolved_base_url,
        model=profile.model,
        reachable=True,
        json_schema="enforced",
        json_object=True,
        sampling_varies=True,
        usage_reported=True,
        rate_limit_headers=False,
        max_completion_tokens_honoured=True,
        max_tokens_honoured=True,
        offline=True,
        probed_at=time.time(),
    )


def cache_file() -> Path:
    return home() / "servers.json"


def _key(base_url: str, model: str) -> str:
    return f"{base_url} {model}"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    servers = data.get("servers") if isinstance(data, dict) and data.get("version") == _VERSION else None
    return servers if isinstance(servers, dict) else {}


def cached(profile: ModelProfile, *, max_age: float = MAX_AGE) -> Capabilities | None:
    """The stored probe of this profile's (base URL, model), if younger than ``max_age`` seconds.

    A profile listing several servers of one model: the first of them with a stored probe (they run
    the same server software and model, so one stands for all).
    """
    servers = _read()
    for url in profile.endpoints:
        entry = servers.get(_key(url, profile.model))
        if not isinstance(entry, dict):
            continue
        try:
            caps = Capabilities.from_json(entry)
        except TypeError:
            continue
        if time.time() - caps.probed_at <= max_age:
            return caps
    return None


def _store(caps: Capabilities) -> None:
    servers = _read()
    servers[_key(caps.base_url, caps.model)] = caps.to_json()
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": _VERSION, "servers": servers}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


async def capabilities(
    profile: ModelProfile, *, offline: bool = False, refresh: bool = False, max_age: float = MAX_AGE
) -> Capabilities:
    """The cached probe of ``profile``'s server, probing (and caching what answered) when stale."""
    if offline:
        return offline_capabilities(profile)
    if not refresh and (hit := cached(profile, max_age=max_age)) is not None:
        return hit
    for url in profile.endpoints:  # several servers of one model: the first that answers stands for all
        caps = await probe(profile.at(url) if len(profile.endpoints) > 1 else profile)
        if caps.reachable:  # an outage is not a property of the server: ask again next time
            _store(caps)
            break
    return caps


class _Probe:
    """One probe's requests, their cost and what they saw."""

    def __init__(self, profile: ModelProfile, sdk: openai.AsyncOpenAI) -> None:
        self.profile, self.sdk = profile, sdk
        self.requests = self.tokens = 0
        self.usage_seen: list[bool] = []
        self.ratelimit_seen = False
        self.reasoning_field: str | None = None

    async def ask(self, prompt: str, **params: Any) -> dict[str, Any]:
        """One request; returns the completion as JSON. Status and connection errors propagate."""
        self.requests += 1
        extra = {"extra_body": self.profile.extra_body} if self.profile.extra_body else {}
        raw = await self.sdk.chat.completions.with_raw_response.create(  # type: ignore[call-overload]
            model=self.profile.model, messages=[{"role": "user", "content": prompt}], **params, **extra
        )
        self.ratelimit_seen |= any(h.lower().startswith("x-ratelimit-") for h in raw.headers)
        data = json.loads(raw.http_response.text)
        usage = data.get("usage") if isinstance(data, dict) else None
        self.usage_seen.append(isinstance(usage, dict) and bool(usage.get("total_tokens")))
        if isinstance(usage, dict):
            self.tokens += int(usage.get("total_tokens") or 0)
        for field in ("reasoning_content", "reasoning"):
            if _message(data).get(field):
                self.reasoning_field = field
        return data if isinstance(data, dict) else {}

    async def json_object(self) -> bool | None:
        try:
            data = await self.ask(
                'Answer with a JSON object with one key, "ok", set to true.',
                response_format={"type": "json_object"},
                max_tokens=200,
            )
        except openai.APIStatusError as exc:
            return False if named_parameter(exc) else None
        return isinstance(_json(_content(data)), dict)

    async def sampling_varies(self) -> bool | None:
        prompt = "Write one short, original sentence about the sea."
        try:
            first, second = [
                await self.ask(prompt, temperature=1.0, seed=seed, max_tokens=40) for seed in (1, 2)
            ]
        except openai.APIStatusError:
            return None
        return _content(first) != _content(second)

    async def honoured(self, parameter: str) -> bool | None:
        try:
            data = await self.ask("Count from 1 to 100, separated by spaces.", **{parameter: _TINY})
        except openai.APIStatusError:
            return False
        choice = (data.get("choices") or [{}])[0]
        completion = int((data.get("usage") or {}).get("completion_tokens") or 0)
        if choice.get("finish_reason") == "length":
            return True
        spent = completion or len(_content(data)) // 4
        return spent <= _TINY + 2


async def probe(profile: ModelProfile) -> Capabilities:
    """Ask the server a few tiny questions (5-6 requests) and say what it does; never raises for a
    server's answer (an unreachable or refusing one is described in ``error``)."""
    started = time.time()

    def made(**found: Any) -> Capabilities:
        return Capabilities(
            base_url=profile.resolved_base_url, model=profile.model, probed_at=started, **found
        )

    sdk = openai.AsyncOpenAI(
        api_key=profile.api_key(required=False) or "none",
        base_url=profile.resolved_base_url,
        max_retries=0,  # every request is counted here; an outage is re-probed on the next run
        timeout=min(60.0, profile.timeout),
    )
    p = _Probe(profile, sdk)
    try:
        schema_support: SchemaSupport
        try:
            data = await p.ask(
                "Say hello.",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "synthgen_probe", "schema": _SCHEMA, "strict": True},
                },
                max_tokens=200,
            )
        except openai.APIConnectionError as exc:
            return made(reachable=False, error=unreachable(exc, profile), probe_requests=1)
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403, 404):
                return made(reachable=False, error=str(fail_fast(exc, profile)), probe_requests=1)
            if named_parameter(exc) in ("response_format", "json_schema"):
                schema_support = "rejected"
            else:
                return made(
                    reachable=False,
                    error=f"answered {exc.status_code}: {server_text(exc, profile)}",
                    probe_requests=1,
                )
        else:
            value = _json(_content(data))
            if isinstance(value, dict) and value.get(_MARKER) == "probe-ok" and len(value) == 1:
                schema_support = "enforced"
            elif not _content(data) and _finish(data) == "length":
                schema_support = "unknown"  # the thinking ate the budget before any answer
            else:
                schema_support = "ignored"
        json_object, varies, mct = await asyncio.gather(
            p.json_object(), p.sampling_varies(), p.honoured("max_completion_tokens")
        )
        mt = True if mct else await p.honoured("max_tokens")
    except (openai.APIConnectionError, openai.APIStatusError) as exc:
        what = unreachable(exc, profile) if isinstance(exc, openai.APIConnectionError) else str(exc)
        return made(reachable=False, error=what, probe_requests=p.requests)
    finally:
        await sdk.close()
    return made(
        reachable=True,
        json_schema=schema_support,
        json_object=json_object,
        sampling_varies=varies,
        usage_reported=all(p.usage_seen) if p.usage_seen else None,
        rate_limit_headers=p.ratelimit_seen,
        reasoning_field=p.reasoning_field,
        max_completion_tokens_honoured=mct,
        max_tokens_honoured=mt,
        probe_requests=p.requests,
        probe_tokens=p.tokens,
    )


def _message(data: Any) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    return message if isinstance(message, dict) else {}


def _content(data: Any) -> str:
    return str(_message(data).get("content") or "")


def _finish(data: Any) -> str:
    choices = data.get("choices") if isinstance(data, dict) else None
    return str((choices[0] if choices else {}).get("finish_reason") or "")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
