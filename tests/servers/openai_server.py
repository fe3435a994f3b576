"""A real loopback HTTP server that speaks the OpenAI chat-completions API.

Why this exists: synthgen's LLM client must survive retries, rate limits, malformed replies and
structured-output failures, and its throughput must be measured without paying for tokens. Mocking
the SDK would test our assumptions about the SDK, not the SDK; so this module serves
``POST /v1/chat/completions`` over real HTTP, and the real ``openai.AsyncOpenAI`` talks to it::

    with OpenAIServer(ServerConfig(fault_rate=0.2, seed=1)) as srv:
        client = openai.AsyncOpenAI(base_url=srv.url, api_key="sk-test")
        ...
        assert srv.stats()["served_ok"] == 10

Three ways to run it:

* ``OpenAIServer`` runs the aiohttp app in a background thread with its own event loop (tests).
* ``spawn_server`` runs it in a subprocess (benchmarks: the server's CPU is not billed to the
  client process) and controls it over ``GET /_stats``, ``POST /_reset`` and ``POST /_config``.
* ``python -m tests.servers.openai_server --port 0 ...`` prints ``READY <url>`` once listening.

Replies are deterministic: content is derived from a hash of the request body and the
``x-synthgen-sample`` header, and injected faults are drawn from ``random.Random(seed)``.
Structured requests (``response_format`` ``json_schema``) get a JSON instance that validates
against the requested schema (see ``generate_instance``), so ``client.chat.completions.parse``
works with pydantic models.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = [
    "ALL_FAULTS",
    "DEFAULT_FAULTS",
    "ECHO_STATUSES",
    "ERROR_BODY_SHAPES",
    "LLAMA_CPP_PYTHON_REJECTION",
    "OLLAMA_QUEUE_FULL",
    "OpenAIServer",
    "ServerConfig",
    "SpawnedServer",
    "format_reset",
    "generate_instance",
    "main",
    "parse_reset",
    "spawn_server",
    "validate_instance",
]

#: Every fault kind the server can inject (``ServerConfig.faults`` / ``fault_sequence``).
ALL_FAULTS: tuple[str, ...] = (
    "429",  # rate limited: retry-after, retry-after-ms and x-ratelimit-* headers
    "408",  # request timeout (the SDK retries it)
    "500",  # internal server error
    "503",  # overloaded, with retry-after headers
    "x_should_retry",  # 500 with ``x-should-retry: true``
    "x_should_retry_400",  # 400 with ``x-should-retry: true`` (the header overrides the status)
    "hang",  # no answer until the client disconnects (at most ``hang_max`` s, then 504)
    "malformed_json",  # 200, content-type application/json, body is not JSON
    "schema_violation",  # 200, content is JSON that violates the requested json_schema
    "invalid_json_content",  # 200, content is not JSON although JSON was requested
    "truncated",  # 200, finish_reason "length", content cut in the middle
    "refusal",  # 200, message.refusal set, content null
    "content_filter",  # 200, finish_reason "content_filter"
    "disconnect",  # the connection is closed without any response
)

#: Faults a well-behaved client is expected to retry; the default of ``ServerConfig.faults``.
DEFAULT_FAULTS: tuple[str, ...] = ("429", "408", "500", "503", "x_should_retry")

#: Faults that only make sense when the request asked for JSON; drawn for a plain-text request they
#: are not injected (the normal reply is served and nothing is counted).
_JSON_ONLY_FAULTS = {
    "schema_violation": ("json_schema",),
    "invalid_json_content": ("json_schema", "json_object"),
}

#: Error statuses whose bodies quote the Authorization header when ``ServerConfig.echo_auth`` is set.
ECHO_STATUSES = frozenset({400, 401, 429, 500})

#: Shapes of error bodies real servers send (``ServerConfig.error_body_shape``).
ERROR_BODY_SHAPES = ("openai", "vllm", "ollama", "detail", "text")

#: What llama-cpp-python's server answers (HTTP 500) to ``response_format: json_schema``.
LLAMA_CPP_PYTHON_REJECTION = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' "
    "or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]"
)

#: Ollama's 503 when its request queue is full.
OLLAMA_QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"

#: Sequence entries that mean "serve this request normally, inject nothing".
_NO_FAULT = ("", "ok", "none")

Responder = Callable[[dict[str, Any]], "str | dict[str, Any] | Awaitable[str | dict[str, Any] | None] | None"]

_REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
_SAMPLE_HEADER = "x-synthgen-sample"
#: Set on a request whose connection the "disconnect" fault closed (not a client disconnect).
_CLOSED_BY_FAULT = web.RequestKey("loopback_closed_by_fault", bool)


@dataclass
class ServerConfig:
    """Behaviour of the server; mutable at runtime (each request reads the current values).

    Change it in-process through ``server.config.<field> = ...`` or ``server.update_config(...)``,
    and in a subprocess through ``SpawnedServer.update_config(...)`` (``POST /_config``).

    * ``latency`` / ``latency_jitter``: seconds slept per request; the jitter is uniform in
      ``[-jitter, +jitter]`` (clamped at 0) so the mean stays ``latency``. Not applied to
      rate-limit rejections or auth failures, which a real API answers at once.
    * ``fault_rate``: probability per request (so each retry draws again) of injecting a fault,
      chosen uniformly from ``faults``; draws come from ``random.Random(seed)``.
    * ``fault_sequence``: kinds consumed one per request, before any random draw, to script
      exact scenarios ("first attempt 500, second OK"); ``"ok"`` means serve normally.
    * ``retry_after``: seconds announced by injected 429/503 (``retry-after`` and ``-ms``).
    * ``hang_max``: longest a ``hang`` fault waits for the client to give up.
    * ``rpm_limit`` / ``rpm_window``: sliding-window limit of ``rpm_limit * rpm_window / 60``
      accepted requests in any ``rpm_window`` seconds (OpenAI enforces sub-minute windows too).
    * ``tpm_limit``: the same for tokens (prompt tokens plus ``max_tokens``), same window.
    * ``responder``: script hook called with the parsed request; returns the content (``str``),
      a dict of overrides (see ``OpenAIServer``), or ``None`` for the default reply. In-process
      only: it cannot cross to a subprocess.
    * ``api_key``: when set, any other bearer token gets a 401.
    * ``model_suffix``: appended to the requested model in replies (e.g. ``"-2024-07-18"``).
    * ``echo_auth``: error replies with a status in ``ECHO_STATUSES`` (400, 401, 429, 500) quote the
      request's Authorization header in ``error.message`` and ``error.request_headers``, as some
      proxies and self-hosted servers do: the client must keep the key out of what it reports.

    Protocol bends of real servers (all off by default; see docs/servers.md):

    * ``json_schema_mode``: ``enforce`` (OpenAI, vLLM, llama-server), ``ignore`` (transformers serve:
      a ``json_schema`` request gets JSON that does not follow the schema) or ``reject``
      (llama-cpp-python: HTTP 500 "Input should be 'text' or 'json_object'").
    * ``json_object_follows_prompt``: in ``json_object`` mode, answer an instance of the JSON schema
      stated in a message (as a model reading its prompt would), else a generic object.
    * ``temperature_ignored``: ``temperature`` and ``seed`` do not change the answer (greedy).
    * ``error_body_shape``: error replies as ``openai`` (``code`` a string), ``vllm`` (an int),
      ``ollama`` (null), ``detail`` (FastAPI ``{"detail": ...}``) or ``text`` (plain text).
    * ``retry_after_header``: the header injected 429/503 announce their wait in, instead of
      ``retry-after``/``retry-after-ms`` (LiteLLM: ``llm_provider-retry-after``).
    * ``queue_full_503``: the ``503`` fault is Ollama's "server busy" (no retry-after header).
    * ``reasoning_field``: the message carries the thinking in this field (``reasoning`` for
      vLLM/Ollama, ``reasoning_content`` for llama.cpp); thinking costs ``reasoning_tokens`` tokens
      of the budget first: a smaller ``max_tokens`` gets an empty content and ``finish_reason: length``.
    * ``ignore_max_completion_tokens``: only ``max_tokens`` limits the answer (Ollama).
    * ``plausible``: without a responder, answer what synthgen's embedded offline provider would
      (Spanish extractive answers, schema-valid), so a whole recipe passes the quality checks in a
      subprocess, where no responder can go (``benchmarks/pipeline.py``).
    """

    latency: float = 0.0
    latency_jitter: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    fault_sequence: list[str] = field(default_factory=list)
    retry_after: float = 0.05
    hang_max: float = 300.0
    rpm_limit: int | None = None
    rpm_window: float = 60.0
    tpm_limit: int | None = None
    seed: int = 0
    responder: Responder | None = None
    api_key: str | None = None
    model_suffix: str = ""
    echo_auth: bool = False
    json_schema_mode: str = "enforce"
    json_object_follows_prompt: bool = False
    temperature_ignored: bool = False
    error_body_shape: str = "openai"
    retry_after_header: str = ""
    queue_full_503: bool = False
    reasoning_field: str = ""
    reasoning_tokens: int = 0
    ignore_max_completion_tokens: bool = False
    plausible: bool = False

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        self.validate()

    def validate(self) -> None:
        """Reject values that would make the server behave silently differently from the intent."""
        unknown = [
            k for k in (*self.faults, *self.fault_sequence) if k not in ALL_FAULTS and k not in _NO_FAULT
        ]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_FAULTS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in [0, 1], got {self.fault_rate}")
        if self.fault_rate > 0 and not self.faults:
            raise ValueError("fault_rate > 0 needs at least one kind in faults")
        if self.rpm_window <= 0:
            raise ValueError(f"rpm_window must be > 0, got {self.rpm_window}")
        if self.rpm_limit is not None and self.rpm_limit <= 0:
            raise ValueError(f"rpm_limit must be > 0 or None, got {self.rpm_limit}")
        if self.tpm_limit is not None and self.tpm_limit <= 0:
            raise ValueError(f"tpm_limit must be > 0 or None, got {self.tpm_limit}")
        if self.json_schema_mode not in ("enforce", "ignore", "reject"):
            raise ValueError(
                f"json_schema_mode must be enforce, ignore or reject, got {self.json_schema_mode!r}"
            )
        if self.error_body_shape not in ERROR_BODY_SHAPES:
            raise ValueError(
                f"error_body_shape must be one of {ERROR_BODY_SHAPES}, got {self.error_body_shape!r}"
            )
        if self.reasoning_tokens < 0:
            raise ValueError(f"reasoning_tokens must be >= 0, got {self.reasoning_tokens}")

    def to_json(self) -> dict[str, Any]:
        """JSON-safe view (without ``responder``), as sent to and served by ``/_config``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "responder"}
        out["faults"] = list(self.faults)
        out["fault_sequence"] = list(self.fault_sequence)
        return out


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ServerConfig)}


def _apply_config(config: ServerConfig, fields: Mapping[str, Any], *, allow_responder: bool = True) -> None:
    """Validate ``fields`` on a copy first, so a bad update leaves the running config untouched."""
    unknown = set(fields) - _CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown config field(s): {sorted(unknown)}")
    if not allow_responder and "responder" in fields:
        raise ValueError("responder cannot be set over HTTP (it is a Python callable)")
    trial = dataclasses.replace(config, fault_sequence=list(config.fault_sequence))
    for name, value in fields.items():
        if name == "faults":
            value = tuple(value)
        elif name == "fault_sequence":
            value = list(value)
        setattr(trial, name, value)
    trial.validate()
    for name in fields:
        setattr(config, name, getattr(trial, name))


# ---------------------------------------------------------------------------------------------
# OpenAI-style rate-limit durations
# ---------------------------------------------------------------------------------------------


def format_reset(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do (``20ms``, ``1s``, ``6m0s``)."""
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{round(seconds * 1000)}ms"

    def secs(value: float) -> str:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return text or "0"

    if seconds < 60.0:
        return f"{secs(seconds)}s"
    hours, rest = divmod(seconds, 3600.0)
    minutes, rest = divmod(rest, 60.0)
    if hours:
        return f"{int(hours)}h{int(minutes)}m{secs(rest)}s"
    return f"{int(minutes)}m{secs(rest)}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(text: str) -> float:
    """Inverse of ``format_reset``: ``"6m0s"`` -> 360.0, ``"20ms"`` -> 0.02."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not an OpenAI reset duration: {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# JSON Schema -> instance generator, and a small validator
# ---------------------------------------------------------------------------------------------

_WORDS = (
    "amber", "brisk", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kestrel",
    "lumen", "meadow", "nimbus", "orchid", "pebble", "quartz", "raven", "sierra", "tundra", "umber", "violet",
    "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip


def _resolve_pointer(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _types_of(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, list):
        return [str(t) for t in declared]
    if isinstance(declared, str):
        return [declared]
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema or "prefixItems" in schema:
        return ["array"]
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return ["number"]
    return ["string"]


class _Generator:
    """Builds one instance of a JSON Schema; why: structured-output tests need valid content."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, max_depth: int) -> None:
        self.root = root
        self.rng = rng
        self.max_depth = max_depth

    def text(self) -> str:
        words = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(2, 4)))
        return f"{words} {self.rng.getrandbits(24):06x}"

    def deref(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, Mapping) and "$ref" in schema and seen < 64:
            target = _resolve_pointer(self.root, schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings} if siblings else target
            seen += 1
        return schema

    def gen(self, schema: Any, depth: int = 0) -> Any:
        if schema is True or schema == {} or schema is None:
            return self.text()
        if schema is False:
            return None
        schema = self.deref(schema)
        deep = depth >= self.max_depth
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(list(schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.deref(o) for o in schema[key]]
                if deep:
                    terminal = [o for o in options if "null" in _types_of(o) or "$ref" not in json.dumps(o)]
                    options = terminal or options
                base = {k: v for k, v in schema.items() if k != key}
                return self.gen(
                    {**base, **self.rng.choice(options)} if base else self.rng.choice(options), depth
                )
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.deref(part)
                for k, v in part.items():
                    if k == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required":
                        merged["required"] = list(dict.fromkeys([*merged.get("required", []), *v]))
                    else:
                        merged.setdefault(k, v)
            return self.gen(merged, depth)
        types = _types_of(schema)
        if len(types) > 1:
            non_null = [t for t in types if t != "null"]
            kind = "null" if (deep and "null" in types) or not non_null else self.rng.choice(non_null)
        else:
            kind = types[0]
        maker = getattr(self, f"gen_{kind}", None)
        if maker is None:
            raise ValueError(f"unsupported JSON Schema type {kind!r}")
        return maker(schema, depth)

    def gen_null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None

    def gen_boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _bounds(self, schema: Mapping[str, Any], integer: bool) -> tuple[float, float]:
        lo = schema.get("minimum", -math.inf)
        hi = schema.get("maximum", math.inf)
        step = 1 if integer else 1e-3
        ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if isinstance(ex_lo, bool):  # draft 4 style
            lo = lo + step if ex_lo else lo
        elif ex_lo is not None:
            lo = max(lo, ex_lo + step)
        if isinstance(ex_hi, bool):
            hi = hi - step if ex_hi else hi
        elif ex_hi is not None:
            hi = min(hi, ex_hi - step)
        if math.isinf(lo) and math.isinf(hi):
            lo, hi = 0, 100
        elif math.isinf(lo):
            lo = hi - 100
        elif math.isinf(hi):
            hi = lo + 100
        return lo, hi

    def gen_integer(self, schema: Mapping[str, Any], depth: int) -> int:
        lo, hi = self._bounds(schema, integer=True)
        lo_i, hi_i = math.ceil(lo), math.floor(hi)
        mult = schema.get("multipleOf")
        if mult:
            k_lo, k_hi = math.ceil(lo_i / mult), math.floor(hi_i / mult)
            return int(self.rng.randint(k_lo, max(k_lo, k_hi)) * mult)
        return self.rng.randint(lo_i, max(lo_i, hi_i))

    def gen_number(self, schema: Mapping[str, Any], depth: int) -> float | int:
        lo, hi = self._bounds(schema, integer=False)
        mult = schema.get("multipleOf")
        if mult:
            k_lo, k_hi = math.ceil(lo / mult), math.floor(hi / mult)
            value = self.rng.randint(k_lo, max(k_lo, k_hi)) * mult
            return int(value) if float(value).is_integer() else value
        value = round(self.rng.uniform(lo, hi), 3)
        return min(max(value, lo), hi)

    def gen_string(self, schema: Mapping[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        tag = f"{self.rng.getrandbits(24):06x}"
        word = self.rng.choice(_WORDS)
        day = f"2024-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        if fmt == "date-time":
            hms = (self.rng.randint(0, 23), self.rng.randint(0, 59), self.rng.randint(0, 59))
            text = f"{day}T{hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d}Z"
        elif fmt == "date":
            text = day
        elif fmt == "time":
            text = f"{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:00"
        elif fmt == "email":
            text = f"{word}.{tag}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{word}/{tag}"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        elif fmt == "ipv4":
            text = ".".join(str(self.rng.randint(1, 254)) for _ in range(4))
        else:
            text = self.text()
        pattern = schema.get("pattern")
        if pattern:
            for candidate in (
                text,
                tag,
                word,
                word.upper(),
                word.capitalize(),
                str(self.rng.randint(0, 9999)),
            ):
                if re.search(pattern, candidate):
                    text = candidate
                    break
        min_len, max_len = schema.get("minLength", 0), schema.get("maxLength")
        while len(text) < min_len:
            text += " " + self.rng.choice(_WORDS)
        if max_len is not None:
            text = text[:max_len].rstrip() if len(text[:max_len].rstrip()) >= min_len else text[:max_len]
        return text

    def gen_array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = [self.gen(s, depth + 1) for s in schema.get("prefixItems", [])]
        items = schema.get("items", {} if not prefix else False)
        lo = max(schema.get("minItems", 0), len(prefix))
        hi = schema.get("maxItems", lo + 3 if lo else 3)
        if depth >= self.max_depth or items is False:
            count = lo
        else:
            count = self.rng.randint(max(lo, 1 if hi >= 1 else 0), max(lo, hi))
        out = list(prefix)
        seen = {json.dumps(v, sort_keys=True) for v in out}
        attempts = 0
        while len(out) < count and attempts < count * 10 + 10:
            attempts += 1
            value = self.gen(items, depth + 1)
            key = json.dumps(value, sort_keys=True)
            if schema.get("uniqueItems") and key in seen:
                continue
            seen.add(key)
            out.append(value)
        return out

    def gen_object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties", {})
        required = list(schema.get("required", []))
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (depth < self.max_depth and self.rng.random() < 0.7):
                out[name] = self.gen(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = self.gen(extra if isinstance(extra, Mapping) else {}, depth + 1)
        want = schema.get("minProperties", 0)
        index = 0
        while len(out) < want and extra is not False:
            index += 1
            out.setdefault(f"key_{index}", self.gen(extra if isinstance(extra, Mapping) else {}, depth + 1))
        return out


def _seed_from(seed: int | str | bytes) -> int:
    data = seed if isinstance(seed, bytes) else str(seed).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def generate_instance(schema: Mapping[str, Any], *, seed: int | str | bytes = 0, max_depth: int = 6) -> Any:
    """Return a JSON value that validates against ``schema``, deterministic for a given ``seed``.

    Handles the subset structured outputs use: ``type`` (incl. lists), ``object`` with
    ``properties``/``required``/``additionalProperties``, ``array`` with ``items``/``prefixItems``/
    ``minItems``/``maxItems``/``uniqueItems``, strings with ``minLength``/``maxLength``/``format``
    (simple ``pattern``), numeric bounds and ``multipleOf``, ``enum``, ``const``, ``anyOf``/
    ``oneOf``/``allOf`` and local ``$ref`` (``$defs``/``definitions``), recursion bounded by
    ``max_depth`` (past it, nullable branches and minimum sizes are chosen).
    """
    return _Generator(schema, random.Random(_seed_from(seed)), max_depth).gen(schema)


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False


def validate_instance(
    schema: Any, instance: Any, *, root: Mapping[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """Return the list of violations of ``instance`` against ``schema`` (empty when valid).

    Why: the server must know whether a reply it served was a *valid* structured answer (for
    ``served_ok``/``duplicates``), including replies a ``responder`` scripted. Covers the same
    keyword subset as ``generate_instance`` plus ``pattern``, ``not`` and ``minProperties``.
    """
    if schema is True or schema is None:
        return []
    if schema is False:
        return [f"{path}: no value is allowed"]
    root = root if root is not None else schema
    errors: list[str] = []
    if "$ref" in schema:
        errors += validate_instance(_resolve_pointer(root, schema["$ref"]), instance, root=root, path=path)
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: expected const {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "anyOf" in schema and not any(
        not validate_instance(s, instance, root=root, path=path) for s in schema["anyOf"]
    ):
        errors.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema:
        hits = sum(not validate_instance(s, instance, root=root, path=path) for s in schema["oneOf"])
        if hits != 1:
            errors.append(f"{path}: matches {hits} oneOf branches, expected 1")
    for sub in schema.get("allOf", []):
        errors += validate_instance(sub, instance, root=root, path=path)
    if "not" in schema and not validate_instance(schema["not"], instance, root=root, path=path):
        errors.append(f"{path}: matches a 'not' schema")
    declared = schema.get("type")
    if declared is not None:
        kinds = declared if isinstance(declared, list) else [declared]
        if not any(_type_ok(k, instance) for k in kinds):
            return [*errors, f"{path}: expected type {declared}, got {type(instance).__name__}"]
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in instance:
                errors.append(f"{path}: missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            if name in props:
                errors += validate_instance(props[name], value, root=root, path=f"{path}.{name}")
            elif extra is False:
                errors.append(f"{path}: additional property {name!r} not allowed")
            elif isinstance(extra, Mapping):
                errors += validate_instance(extra, value, root=root, path=f"{path}.{name}")
        if len(instance) < schema.get("minProperties", 0):
            errors.append(f"{path}: fewer than minProperties")
        if "maxProperties" in schema and len(instance) > schema["maxProperties"]:
            errors.append(f"{path}: more than maxProperties")
    elif isinstance(instance, list):
        prefix = schema.get("prefixItems", [])
        for i, value in enumerate(instance):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += validate_instance(sub, value, root=root, path=f"{path}[{i}]")
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than minItems={schema['minItems']}")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            errors.append(f"{path}: more than maxItems={schema['maxItems']}")
        if schema.get("uniqueItems"):
            keys = [json.dumps(v, sort_keys=True) for v in instance]
            if len(set(keys)) != len(keys):
                errors.append(f"{path}: items are not unique")
    elif isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than minLength")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            errors.append(f"{path}: longer than maxLength")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{path}: does not match pattern {schema['pattern']!r}")
    elif isinstance(instance, int | float) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: below minimum")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: above maximum")
        ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if ex_lo is not None and not isinstance(ex_lo, bool) and instance <= ex_lo:
            errors.append(f"{path}: not above exclusiveMinimum")
        if ex_hi is not None and not isinstance(ex_hi, bool) and instance >= ex_hi:
            errors.append(f"{path}: not below exclusiveMaximum")
        mult = schema.get("multipleOf")
        if mult and abs(instance / mult - round(instance / mult)) > 1e-9:
            errors.append(f"{path}: not a multiple of {mult}")
    return errors


def _violate(schema: Mapping[str, Any], instance: Any, rng: random.Random) -> Any:
    """Turn a valid instance into one that breaks ``schema`` (for the ``schema_violation`` fault)."""
    resolved = _Generator(schema, rng, 0).deref(schema)
    required = [k for k in resolved.get("required", []) if isinstance(instance, dict) and k in instance]
    broken: Any
    if required:
        broken = dict(instance)
        del broken[rng.choice(required)]
    elif isinstance(instance, dict) and instance:
        broken = dict(instance)
        name = rng.choice(sorted(broken))
        broken[name] = 12345 if isinstance(broken[name], str) else "not the declared type"
    else:
        broken = ["not", "the", "declared", "type"] if isinstance(instance, dict) else {"unexpected": True}
    if not validate_instance(schema, broken):  # schema too permissive for the edits above
        broken = {"violation": [1, "two", None]} if not isinstance(instance, dict) else [12345]
    return broken


# ---------------------------------------------------------------------------------------------
# The server core: request handling, limits, faults and statistics
# ---------------------------------------------------------------------------------------------


def _usage_zero() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@dataclass
class _Stats:
    requests: int = 0
    status: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    models: collections.Counter[str] = field(default_factory=collections.Counter)
    rate_limited: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    client_disconnects: int = 0
    max_in_window: int = 0
    max_in_60s: int = 0
    served_ok: int = 0
    duplicates: int = 0
    responder_errors: int = 0
    usage: dict[str, int] = field(default_factory=_usage_zero)
    usage_all: dict[str, int] = field(default_factory=_usage_zero)
    auth_headers_seen: set[str] = field(default_factory=set)
    ok_fingerprints: set[bytes] = field(default_factory=set)


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _tokens(text: str | None) -> int:
    return max(1, len(text or "") // 4)


class _Core:
    """State shared by every request; handlers run in one event loop, ``stats()`` in any thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._closing: asyncio.Event | None = None
        self._reset_locked()

    # -- state ----------------------------------------------------------------------------------

    def _reset_locked(self) -> None:
        in_flight = getattr(self, "_stats", _Stats()).in_flight
        self._stats = _Stats(in_flight=in_flight, peak_in_flight=in_flight)
        self._rng = random.Random(self.config.seed)
        self._jitter_rng = random.Random(f"jitter-{self.config.seed}")
        self._rng_seed = self.config.seed
        self._arrivals_60: collections.deque[float] = collections.deque()
        self._arrivals_win: collections.deque[float] = collections.deque()
        self._win_len = 60.0
        self._accepted: collections.deque[float] = collections.deque()
        self._accepted_tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._counter = 0

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            return {
                "requests": s.requests,
                "status": dict(s.status),
                "faults": dict(s.faults),
                "models": dict(s.models),
                "rate_limited": s.rate_limited,
                "in_flight": s.in_flight,
                "peak_in_flight": s.peak_in_flight,
                "client_disconnects": s.client_disconnects,
                "window_s": self._win_len,
                "max_in_window": s.max_in_window,
                "max_in_60s": s.max_in_60s,
                "served_ok": s.served_ok,
                "unique_ok": len(s.ok_fingerprints),
                "duplicates": s.duplicates,
                "responder_errors": s.responder_errors,
                "usage": dict(s.usage),
                "usage_all": dict(s.usage_all),
                "auth_headers_seen": sorted(s.auth_headers_seen),
            }

    def update_config(self, fields: Mapping[str, Any], *, allow_responder: bool = True) -> None:
        with self._lock:
            _apply_config(self.config, fields, allow_responder=allow_responder)

    def _record_arrival(self, now: float) -> None:
        cfg = self.config
        window = float(cfg.rpm_window) if cfg.rpm_limit else 60.0
        s = self._stats
        horizon = max(60.0, window)
        self._arrivals_60.append(now)
        while self._arrivals_60 and self._arrivals_60[0] <= now - horizon:
            self._arrivals_60.popleft()
        if window != self._win_len:  # the window changed: rebuild it, old maxima are meaningless
            self._win_len = window
            self._arrivals_win = collections.deque(t for t in self._arrivals_60 if t > now - window)
            s.max_in_window = 0
        else:
            self._arrivals_win.append(now)
            while self._arrivals_win and self._arrivals_win[0] <= now - window:
                self._arrivals_win.popleft()
        in_60 = (
            len(self._arrivals_60) if horizon == 60.0 else sum(1 for t in self._arrivals_60 if t > now - 60.0)
        )
        s.max_in_window = max(s.max_in_window, len(self._arrivals_win))
        s.max_in_60s = max(s.max_in_60s, in_60)

    # -- limits ---------------------------------------------------------------------------------

    def _check_limits(self, now: float, cost_tokens: int) -> tuple[float | None, dict[str, str]]:
        """Admit or reject one request; returns (wait seconds if rejected, x-ratelimit headers)."""
        cfg = self.config
        window = float(cfg.rpm_window)
        headers: dict[str, str] = {}
        wait: float | None = None
        while self._accepted and self._accepted[0] <= now - window:
            self._accepted.popleft()
        while self._accepted_tokens and self._accepted_tokens[0][0] <= now - window:
            self._accepted_tokens.popleft()
        req_cap = tok_cap = 0
        if cfg.rpm_limit:
            req_cap = max(1, math.floor(cfg.rpm_limit * window / 60.0 + 1e-9))
            if len(self._accepted) >= req_cap:
                wait = self._accepted[0] + window - now
        used_tokens = sum(t for _, t in self._accepted_tokens)
        if cfg.tpm_limit:
            tok_cap = max(1, math.floor(cfg.tpm_limit * window / 60.0 + 1e-9))
            if used_tokens + cost_tokens > tok_cap and self._accepted_tokens:
                freed, tok_wait = used_tokens, 0.0
                for ts, tokens in self._accepted_tokens:
                    freed -= tokens
                    tok_wait = ts + window - now
                    if freed + cost_tokens <= tok_cap:
                        break
                wait = max(wait or 0.0, tok_wait)
        if wait is None:
            if cfg.rpm_limit:
                self._accepted.append(now)
            if cfg.tpm_limit:
                self._accepted_tokens.append((now, cost_tokens))
                used_tokens += cost_tokens
        if cfg.rpm_limit:
            reset = self._accepted[0] + window - now if self._accepted else 0.0
            headers["x-ratelimit-limit-requests"] = str(cfg.rpm_limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, req_cap - len(self._accepted)))
            headers["x-ratelimit-reset-requests"] = format_reset(reset)
        if cfg.tpm_limit:
            reset = self._accepted_tokens[0][0] + window - now if self._accepted_tokens else 0.0
            headers["x-ratelimit-limit-tokens"] = str(cfg.tpm_limit)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, tok_cap - used_tokens))
            headers["x-ratelimit-reset-tokens"] = format_reset(reset)
        return (max(wait, 0.001) if wait is not None else None), headers

    # -- faults ---------------------------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        cfg = self.config
        if cfg.fault_sequence:
            kind = cfg.fault_sequence.pop(0)
            return None if kind in _NO_FAULT else kind
        if cfg.seed != self._rng_seed:
            self._rng = random.Random(cfg.seed)
            self._jitter_rng = random.Random(f"jitter-{cfg.seed}")
            self._rng_seed = cfg.seed
        if cfg.fault_rate > 0 and self._rng.random() < cfg.fault_rate:
            return self._rng.choice(cfg.faults)
        return None

    # -- HTTP handlers --------------------------------------------------------------------------

    def closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[_openai_errors], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.handle_chat)
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_get("/_stats", self.handle_stats)
        app.router.add_post("/_reset", self.handle_reset)
        app.router.add_get("/_config", self.handle_get_config)
        app.router.add_post("/_config", self.handle_set_config)
        return app

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.stats()), content_type="application/json")

    async def handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=_dumps({"ok": True}), content_type="application/json")

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.config.to_json()), content_type="application/json")

    async def handle_set_config(self, request: web.Request) -> web.Response:
        try:
            fields = json.loads(await request.read())
            if not isinstance(fields, dict):
                raise ValueError("body must be a JSON object of config fields")
            self.update_config(fields, allow_responder=False)
        except (ValueError, TypeError) as exc:
            return _json_error(400, str(exc), "invalid_request_error", "invalid_config")
        return web.Response(body=_dumps(self.config.to_json()), content_type="application/json")

    async def handle_models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "loopback"}
            for m in ("gpt-4o-mini", "gpt-4o")
        ]
        return web.Response(body=_dumps({"object": "list", "data": data}), content_type="application/json")

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        auth = request.headers.get("Authorization")
        with self._lock:
            s = self._stats
            s.requests += 1
            s.in_flight += 1
            s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
            if auth is not None:
                s.auth_headers_seen.add(auth)
            self._record_arrival(now)
            self._counter += 1
            number = self._counter
        try:
            response = await self._chat(request, auth, number)
            if self.config.echo_auth and auth is not None and response.status in ECHO_STATUSES:
                response = _echo_auth(response, auth)
            if self.config.error_body_shape != "openai" and response.status >= 400:
                response = _reshape_error(response, self.config.error_body_shape)
            with self._lock:
                self._stats.status[str(response.status)] += 1
            return response
        except asyncio.CancelledError:
            # The client went away (handler_cancellation) - unless the "disconnect" fault hung up.
            if not request.get(_CLOSED_BY_FAULT, False):
                with self._lock:
                    self._stats.client_disconnects += 1
            raise
        finally:
            with self._lock:
                self._stats.in_flight -= 1

    async def _chat(self, request: web.Request, auth: str | None, number: int) -> web.Response:
        cfg = self.config
        request_id = f"req_{number:012x}"
        base_headers = {"x-request-id": request_id}
        if cfg.api_key is not None and auth != f"Bearer {cfg.api_key}":
            shown = (auth or "")[7:] if (auth or "").startswith("Bearer ") else (auth or "")
            masked = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
            return _json_error(
                401,
                f"Incorrect API key provided: {masked}.",
                "invalid_request_error",
                "invalid_api_key",
                base_headers,
            )
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _json_error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
                base_headers,
            )
        problem = _request_problem(body)
        if problem:
            return _json_error(400, problem, "invalid_request_error", None, base_headers)
        sample = request.headers.get(_SAMPLE_HEADER, "")
        if cfg.temperature_ignored:  # greedy: what only changes the sampling does not change the answer
            raw = _dumps({k: v for k, v in body.items() if k not in ("temperature", "seed", "top_p")})
        digest = hashlib.sha256(raw + b"\x00" + sample.encode()).digest()
        prompt_tokens = max(1, len(json.dumps(body["messages"])) // 4)
        if cfg.ignore_max_completion_tokens:
            max_tokens = body.get("max_tokens")
        else:
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None

        with self._lock:
            self._stats.models[str(body["model"])] += 1
            wait, rl_headers = self._check_limits(time.monotonic(), prompt_tokens + (max_tokens or 0))
            if wait is not None:
                self._stats.rate_limited += 1
            fault = None if wait is not None else self._draw_fault()
            jitter = (
                self._jitter_rng.uniform(-cfg.latency_jitter, cfg.latency_jitter)
                if cfg.latency_jitter
                else 0.0
            )
        headers = {**base_headers, **rl_headers}
        if wait is not None:
            return _rate_limited(wait, headers, "requests" if cfg.rpm_limit else "tokens")

        fmt_type, schema = _response_format(body)
        if fmt_type == "json_schema" and cfg.json_schema_mode == "reject":
            return _json_error(500, LLAMA_CPP_PYTHON_REJECTION, "internal_server_error", None, headers)
        if fmt_type == "json_schema" and cfg.json_schema_mode == "ignore":
            fmt_type, schema = "json_object", None  # JSON, but not the schema's
        elif fmt_type == "json_object" and cfg.json_object_follows_prompt:
            schema = _schema_in_prompt(body["messages"])
        if fault in _JSON_ONLY_FAULTS and fmt_type not in _JSON_ONLY_FAULTS[fault]:
            fault = None

        override: dict[str, Any] = {}
        if fault is None and cfg.responder is None and cfg.plausible:
            from synthgen.llm.offline import offline_reply

            override = {"content": offline_reply(body, sample or "0")["choices"][0]["message"]["content"]}
        if fault is None and cfg.responder is not None:
            try:
                override, fault = await _call_responder(cfg.responder, body)
            except Exception as exc:  # surfaced to the test as a 500 it can see, and counted
                with self._lock:
                    self._stats.responder_errors += 1
                return _json_error(
                    500,
                    f"responder raised {type(exc).__name__}: {exc}",
                    "server_error",
                    "responder_error",
                    headers,
                )
        if fault is not None:
            with self._lock:
                self._stats.faults[fault] += 1

        delay = max(0.0, cfg.latency + jitter)
        if delay > 0:
            await asyncio.sleep(delay)

        if fault is not None:
            early = await self._fault_response(request, fault, headers)
            if early is not None:
                return early
        if "status" in override and override["status"] != 200:
            status = int(override["status"])
            err = override.get("body") or _error_body(f"scripted error {status}", "server_error", None)
            return web.Response(
                status=status,
                body=_dumps(err),
                content_type="application/json",
                headers={**headers, **override.get("headers", {})},
            )
        return self._completion(
            body, digest, fmt_type, schema, prompt_tokens, max_tokens, fault, override, headers, number
        )

    async def _fault_response(
        self, request: web.Request, fault: str, headers: dict[str, str]
    ) -> web.Response | None:
        """Build the reply for faults that are not a (possibly broken) chat completion."""
        cfg = self.config
        retry = {
            "retry-after": f"{cfg.retry_after:g}",
            "retry-after-ms": str(max(1, round(cfg.retry_after * 1000))),
        }
        if fault == "429":
            limit = cfg.rpm_limit or 10_000
            rl = {
                "x-ratelimit-limit-requests": str(limit),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": format_reset(cfg.retry_after),
            }
            msg = "Rate limit reached for requests (injected fault). Please try again later."
            return _json_error(429, msg, "requests", "rate_limit_exceeded", {**headers, **rl, **retry})
        if fault == "408":
            return _json_error(408, "Request timed out.", "timeout", None, headers)
        if fault == "500":
            return _json_error(
                500, "The server had an error while processing your request.", "server_error", None, headers
            )
        if fault == "503" and cfg.queue_full_503:
            return _json_error(503, OLLAMA_QUEUE_FULL, "api_error", None, headers)
        if cfg.retry_after_header and fault in ("429", "503"):
            retry = {cfg.retry_after_header: f"{cfg.retry_after:g}"}
        if fault == "503":
            return _json_error(
                503,
                "The engine is currently overloaded, please try again later.",
                "server_error",
                "overloaded",
                {**headers, **retry},
            )
        if fault == "x_should_retry":
            return _json_error(
                500,
                "Transient error (x-should-retry).",
                "server_error",
                None,
                {**headers, "x-should-retry": "true"},
            )
        if fault == "x_should_retry_400":
            return _json_error(
                400,
                "Transient error (x-should-retry on a 400).",
                "invalid_request_error",
                None,
                {**headers, "x-should-retry": "true"},
            )
        if fault == "hang":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.hang_max):
                    await self.closing_event().wait()
            return _json_error(504, "Gateway timeout after hang.", "server_error", "timeout", headers)
        if fault == "malformed_json":
            broken = (
                b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index": 0, "mess'
            )
            return web.Response(status=200, body=broken, content_type="application/json", headers=headers)
        if fault == "disconnect":
            request[_CLOSED_BY_FAULT] = True
            transport = request.transport
            if transport is not None:
                transport.close()
            # The transport closing makes aiohttp cancel this handler (handler_cancellation=True).
            await asyncio.sleep(5.0)
            return _json_error(500, "connection was not closed", "server_error", None, headers)
        return None

    def _completion(
        self,
        body: dict[str, Any],
        digest: bytes,
        fmt_type: str | None,
        schema: Mapping[str, Any] | None,
        prompt_tokens: int,
        max_tokens: int | None,
        fault: str | None,
        override: dict[str, Any],
        headers: dict[str, str],
        number: int,
    ) -> web.Response:
        """A chat.completion object: the default reply, a scripted one, or a broken-but-200 one."""
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        n_raw = body.get("n")
        n = n_raw if isinstance(n_raw, int) and n_raw > 0 else 1
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        valid = fault is None
        thinking = self.config.reasoning_tokens if self.config.reasoning_field else 0
        for index in range(n):
            content: str | None
            refusal: str | None = None
            finish_reason = "stop"
            if "content" in override:
                value = override["content"]
                content = value if value is None or isinstance(value, str) else json.dumps(value)
            else:
                content = _default_content(fmt_type, schema, digest + index.to_bytes(2, "big"))
            if thinking and max_tokens is not None and max_tokens <= thinking:
                content, finish_reason = "", "length"  # the thinking ate the whole budget
            if fault == "schema_violation" and schema is not None:
                try:
                    instance = json.loads(content or "")
                except ValueError:
                    instance = generate_instance(schema, seed=digest)
                content = json.dumps(_violate(schema, instance, rng))
            elif fault == "invalid_json_content":
                content = f"Sure! Here is the answer you asked for: {_sentence(rng)}"
            elif fault == "truncated":
                content = (content or _sentence(rng))[: max(1, len(content or "") // 2)]
                finish_reason = "length"
            elif fault == "refusal":
                content, refusal = None, _REFUSAL_TEXT
            elif fault == "content_filter":
                content, finish_reason = None, "content_filter"
            budget = None if max_tokens is None else max_tokens - thinking
            if budget is not None and content and _tokens(content) > budget:
                content, finish_reason = content[: budget * 4], "length"
            finish_reason = override.get("finish_reason", finish_reason)
            refusal = override.get("refusal", refusal)
            if override.get("refusal") is not None and "content" not in override:
                content = None
            message: dict[str, Any] = {
                "role": "assistant",
                "content": content,
                "refusal": refusal,
                "annotations": [],
            }
            if self.config.reasoning_field:
                message[self.config.reasoning_field] = "Let me think about what is asked. " * max(
                    1, min(thinking, 50) // 8
                )
            message.update(override.get("message", {}))
            choices.append(
                {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
            )
            spent = _tokens(content if content is not None else refusal) if content != "" else 0
            completion_tokens += spent + (thinking if max_tokens is None else min(thinking, max_tokens))
            if valid:
                valid = _is_valid(fmt_type, schema, content, refusal, finish_reason)
        valid = bool(override.get("valid", valid))
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": n * (thinking if max_tokens is None else min(thinking, max_tokens)),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if "usage" in override:
            usage.update(override["usage"])
        reply = {
            "id": f"chatcmpl-loop{number:010d}{digest.hex()[:8]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": override.get("model", f"{body['model']}{self.config.model_suffix}"),
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_loopback",
        }
        fingerprint = digest
        with self._lock:
            s = self._stats
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                s.usage_all[key] += int(usage[key])
                if valid:
                    s.usage[key] += int(usage[key])
            if valid:
                s.served_ok += 1
                if fingerprint in s.ok_fingerprints:
                    s.duplicates += 1
                s.ok_fingerprints.add(fingerprint)
        return web.Response(status=200, body=_dumps(reply), content_type="application/json", headers=headers)


async def _call_responder(responder: Responder, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Run the script hook; returns (reply overrides, fault kind it asked for)."""
    result = responder(body)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return {}, None
    if isinstance(result, str):
        return {"content": result}, None
    if not isinstance(result, dict):
        raise TypeError(f"responder must return str, dict or None, got {type(result).__name__}")
    override = dict(result)
    fault = override.pop("fault", None)
    if fault is not None and fault not in ALL_FAULTS:
        raise ValueError(f"responder asked for unknown fault {fault!r}")
    return override, fault


def _request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    if body.get("stream"):
        return "stream=true is not supported by the loopback server"
    fmt = body.get("response_format")
    if fmt is not None and (
        not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema")
    ):
        return "Invalid 'response_format'"
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict) or not spec.get("name"):
            return "Invalid 'response_format.json_schema': a name and an object schema are required"
    return None


def _schema_in_prompt(messages: Any) -> Mapping[str, Any] | None:
    """The last JSON schema stated in the messages (after a colon and a newline), if any."""
    for message in reversed(messages if isinstance(messages, list) else []):
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, str) and "schema" in text and ":\n{" in text:
            with contextlib.suppress(ValueError):
                found = json.JSONDecoder().raw_decode(text[text.rindex(":\n{") + 2 :])[0]
                if isinstance(found, dict):
                    return found
    return None


def _reshape_error(response: web.Response, shape: str) -> web.Response:
    """An OpenAI-shaped error reply in the shape another server family sends."""
    try:
        error = json.loads(bytes(response.body))["error"]  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError):
        return response
    message = str(error.get("message") or "")
    if shape == "text":
        body, content_type = message.encode(), "text/plain"
    else:
        if shape == "detail":
            reply: dict[str, Any] = {"detail": message}
        else:
            code = response.status if shape == "vllm" else None
            reply = {"error": {"message": message, "type": error.get("type"), "param": None, "code": code}}
        body, content_type = _dumps(reply), "application/json"
    return web.Response(
        status=response.status,
        body=body,
        content_type=content_type,
        headers={
            k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
        },
    )


def _response_format(body: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None, None
    if fmt["type"] == "json_schema":
        return "json_schema", fmt["json_schema"].get("schema", {})
    return "json_object", None


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 12))]
    return f"Loopback reply {rng.getrandbits(32):08x}: {' '.join(words).capitalize()}."


def _default_content(fmt_type: str | None, schema: Mapping[str, Any] | None, digest: bytes) -> str:
    if fmt_type in ("json_schema", "json_object") and schema is not None:
        return json.dumps(generate_instance(schema, seed=digest))
    rng = random.Random(int.from_bytes(hashlib.sha256(digest).digest()[:8], "big"))
    if fmt_type == "json_object":
        return json.dumps({"reply": _sentence(rng), "id": f"{rng.getrandbits(32):08x}"})
    return _sentence(rng)


def _is_valid(
    fmt_type: str | None,
    schema: Mapping[str, Any] | None,
    content: str | None,
    refusal: str | None,
    finish: str,
) -> bool:
    if content is None or refusal is not None or finish != "stop":
        return False
    if fmt_type is None:
        return True
    try:
        value = json.loads(content)
    except ValueError:
        return False
    if fmt_type == "json_object":
        return isinstance(value, dict)
    return not validate_instance(schema, value)


def _json_error(
    status: int, message: str, type_: str, code: str | None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=_dumps(_error_body(message, type_, code)),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def _echo_auth(response: web.Response, auth: str) -> web.Response:
    """The same error reply with the request's Authorization header quoted in its body."""
    try:
        body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # a scripted body of another shape: replaced by an OpenAI-shaped one
        body = _error_body(f"error {response.status}", "server_error", None)
        error = body["error"]
    error["message"] = f"{error.get('message') or ''} (request had Authorization: {auth})"
    error["request_headers"] = {"Authorization": auth}
    response.body = _dumps(body)
    return response


def _rate_limited(wait: float, headers: dict[str, str], what: str) -> web.Response:
    headers = {
        **headers,
        "retry-after": f"{max(1, math.ceil(wait))}",
        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
    }
    msg = f"Rate limit reached for {what}. Please try again in {format_reset(wait)}."
    return _json_error(429, msg, what, "rate_limit_exceeded", headers)


@web.middleware
async def _openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods get an OpenAI-shaped error body, as SDKs expect to parse one."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _json_error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", "unknown_url"
        )
    except web.HTTPMethodNotAllowed:
        return _json_error(
            405,
            f"Method not allowed ({request.method} {request.path})",
            "invalid_request_error",
            "method_not_allowed",
        )


def _make_runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client that gives up (timeout, cancel) cancels its handler, so
    # ``in_flight`` drops at once instead of when the latency sleep ends.
    return web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)


# ---------------------------------------------------------------------------------------------
# In-process server (background thread)
# ---------------------------------------------------------------------------------------------


class OpenAIServer:
    """The loopback server on 127.0.0.1 in a background thread with its own event loop.

    ``with OpenAIServer(ServerConfig(...)) as srv:`` then point the SDK at ``srv.url``
    (``http://127.0.0.1:PORT/v1``). The port is ephemeral (0) unless given.

    A ``responder`` returning a dict may set: ``content`` (str, or any JSON value, dumped),
    ``finish_reason``, ``refusal``, ``message`` (merged into the message, e.g. ``tool_calls``),
    ``usage`` (merged), ``model``, ``valid`` (override the stats verdict), ``fault`` (inject that
    fault kind), or ``status`` + ``body`` + ``headers`` for an arbitrary non-200 reply.
    """

    def __init__(self, config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config if config is not None else ServerConfig()
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._core = _Core(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the control endpoints ``/_stats`` etc. live here)."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The SDK ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 10.0) -> OpenAIServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name="openai-loopback-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("loopback server did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"loopback server failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start(), which raises it in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._core.closing_event()
        self._runner = _make_runner(self._core.build_app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        self._core.closing_event().set()  # wakes "hang" faults
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread; bounded by ``timeout`` (hung handlers are cancelled)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        if thread.is_alive():
            raise RuntimeError("loopback server thread did not stop in time")

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """A snapshot (plain dict, JSON-safe) of the counters; same shape as ``GET /_stats``.

        Keys (status codes are strings so in-process and ``/_stats`` results compare equal):
        ``requests`` (chat-completion requests received), ``status`` ({code: n} of responses sent),
        ``faults`` ({kind: n} injected), ``rate_limited`` (429s from ``rpm_limit``/``tpm_limit``),
        ``models``, ``in_flight``, ``peak_in_flight``, ``client_disconnects`` (handlers cancelled
        because the client went away), ``window_s`` / ``max_in_window`` (most arrivals in any
        ``rpm_window`` s, or 60 s without a limit), ``max_in_60s``, ``served_ok`` (valid
        completions), ``unique_ok``, ``duplicates`` (valid completions for a fingerprint already
        served OK; fingerprint = sha256(body + ``x-synthgen-sample``)), ``usage`` (tokens of valid
        completions), ``usage_all`` (tokens of every 200 completion, broken ones included),
        ``responder_errors`` and ``auth_headers_seen`` (sorted list of Authorization values).
        """
        return self._core.stats()

    def reset(self) -> None:
        """Zero the counters, the rate-limit windows and the fault RNG (config is kept)."""
        self._core.reset()

    def update_config(self, **fields: Any) -> None:
        """Change config fields atomically (validated first); same as ``POST /_config``."""
        self._core.update_config(fields)


# ---------------------------------------------------------------------------------------------
# Subprocess server
# ---------------------------------------------------------------------------------------------

_REPO_ROOT = Path(__file__).resolve().parents[2]


class SpawnedServer:
    """Handle on a server running in a child process; mirrors ``OpenAIServer``'s control API."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self.base_url = url.removesuffix("/v1")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _call(self, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        data = _dumps(payload) if payload is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                reply: dict[str, Any] = json.loads(resp.read())
                return reply
        except urllib.error.HTTPError as exc:
            raise ValueError(
                f"{method} {path} failed: {exc.code} {exc.read().decode(errors='replace')}"
            ) from exc

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def get_config(self) -> dict[str, Any]:
        return self._call("GET", "/_config")

    def update_config(self, **fields: Any) -> dict[str, Any]:
        if "faults" in fields:
            fields["faults"] = list(fields["faults"])
        return self._call("POST", "/_config", fields)


@contextlib.contextmanager
def spawn_server(
    config: ServerConfig | None = None, *, startup_timeout: float = 20.0, python: str = sys.executable
) -> Iterator[SpawnedServer]:
    """Run the server in a subprocess (``python -m tests.servers.openai_server``).

    Why: in benchmarks, the server's CPU must not be counted in the client's process. The child
    exits when this context ends (stdin EOF), or with the parent, so no server outlives a test.
    """
    config = config if config is not None else ServerConfig()
    if config.responder is not None:
        raise ValueError("a responder cannot run in a subprocess; use OpenAIServer")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [
        python,
        "-m",
        "tests.servers.openai_server",
        "--port",
        "0",
        "--exit-on-stdin-eof",
        "--config",
        json.dumps(config.to_json()),
    ]
    process = subprocess.Popen(cmd, cwd=_REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        lines: queue.Queue[bytes] = queue.Queue()
        assert process.stdout is not None
        reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            line = lines.get(timeout=startup_timeout).decode().strip()
        except queue.Empty:
            raise RuntimeError(f"spawned server printed no READY line in {startup_timeout}s") from None
        if not line.startswith("READY "):
            raise RuntimeError(f"spawned server failed to start (exit {process.poll()}): {line!r}")
        yield SpawnedServer(process, line.removeprefix("READY "))
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=3.0)
        if process.stdout is not None:
            process.stdout.close()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


async def _serve(core: _Core, host: str, port: int, exit_on_stdin_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    core.closing_event()
    runner = _make_runner(core.build_app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            # os.read, not sys.stdin: a daemon thread blocked in a buffered read can abort shutdown.
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            with contextlib.suppress(RuntimeError):  # the loop may already be closed (signal exit)
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    print(f"READY http://{host}:{runner.addresses[0][1]}/v1", flush=True)  # only once fully set up
    await stop.wait()
    core.closing_event().set()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.servers.openai_server``: serve until SIGINT/SIGTERM (or stdin EOF)."""
    parser = argparse.ArgumentParser(description="Loopback OpenAI chat-completions server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", help="JSON object of ServerConfig fields (applied before the flags)")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when stdin closes (parent died)"
    )
    parser.add_argument("--latency", type=float)
    parser.add_argument("--latency-jitter", type=float)
    parser.add_argument("--fault-rate", type=float)
    parser.add_argument("--faults", help="comma-separated fault kinds")
    parser.add_argument("--retry-after", type=float)
    parser.add_argument("--hang-max", type=float)
    parser.add_argument("--rpm-limit", type=int)
    parser.add_argument("--rpm-window", type=float)
    parser.add_argument("--tpm-limit", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--api-key")
    parser.add_argument("--model-suffix")
    args = parser.parse_args(argv)
    fields: dict[str, Any] = json.loads(args.config) if args.config else {}
    for name in (
        "latency",
        "latency_jitter",
        "fault_rate",
        "retry_after",
        "hang_max",
        "rpm_limit",
        "rpm_window",
        "tpm_limit",
        "seed",
        "api_key",
        "model_suffix",
    ):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.faults is not None:
        fields["faults"] = [k.strip() for k in args.faults.split(",") if k.strip()]
    config = ServerConfig()
    _apply_config(config, fields, allow_responder=False)
    asyncio.run(_serve(_Core(config), args.host, args.port, args.exit_on_stdin_eof))
    return 0


if __name__ == "__main__":
    sys.exit(main())
