"""Model profiles: one named endpoint + model + sampling + limits, as written in a recipe's ``models``.

A profile names the environment variable holding its key (``api_key_env``), never the key, so
recipes can be shared and published without leaking secrets. Because a shared recipe chooses both
the endpoint and the variable whose value is sent there, a profile refuses a ``base_url`` that is
not http(s) with a host (it would only fail later, after minutes of retries) and an ``api_key_env``
that names a well-known secret of another service (``HF_TOKEN``, ``AWS_*``, ``GITHUB_TOKEN``, ...).
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthgen.errors import AuthenticationFailed, ConfigError

__all__ = [
    "MAX_BATCH_REQUESTS",
    "MAX_CONCURRENCY",
    "ModelProfile",
    "Prices",
    "is_reasoning_model",
    "name_profiles",
    "not_llm_key",
    "url_problem",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Requests in flight per endpoint. Each costs a connection and two workers; past ~1000 no provider
# answers faster, and a typo (1e6) used to allocate gigabytes. The CLI's --concurrency has the same bound.
MAX_CONCURRENCY = 1024
#: OpenAI's limit of requests per batch input file (and 200 MB, see synthgen.llm.batch)
MAX_BATCH_REQUESTS = 50_000
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_URL_HINT = "write it as http://HOST:PORT/v1 or https://HOST/v1, e.g. http://localhost:8000/v1"

#: Environment variables that hold another service's secret (full-match, case-insensitive), and what
#: they are. Naming one as ``api_key_env`` would send it as the bearer token to the recipe's endpoint.
_NOT_LLM_KEYS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), what)
    for pattern, what in (
        (
            r"HF_TOKEN|HF_API_TOKEN|HUGGING_?FACE(_HUB)?_TOKEN",
            "a Hugging Face token (it can publish to the Hub)",
        ),
        (r"(GITHUB|GH|ACTIONS|GITLAB|CI_JOB)_\w*", "a GitHub or CI token"),
        (r"AWS_\w*", "AWS credentials"),
        (r"GOOGLE_APPLICATION_CREDENTIALS|AZURE_STORAGE_\w*|KUBECONFIG", "cloud credentials"),
        (r"(SSH|GPG)_\w*|GNUPGHOME", "an SSH or GPG credential"),
        (
            r"NPM_TOKEN|NODE_AUTH_TOKEN|(PYPI|TWINE|UV_PUBLISH|DOCKER|DOCKERHUB)_\w*|CARGO_REGISTRY_TOKEN",
            "a package registry token",
        ),
        (
            r"WANDB_API_KEY|KAGGLE_KEY|CODECOV_TOKEN|(SLACK|SENTRY|VAULT|CLOUDFLARE|DIGITALOCEAN|HEROKU|STRIPE)_\w*",
            "another service's credentials",
        ),
        (
            r"\w*(PASSWORD|PASSWD|PASSPHRASE|PRIVATE_KEY|CLIENT_SECRET|SECRET_ACCESS_KEY|SECRET_KEY|DATABASE_URL)",
            "a password, private key or database credential",
        ),
    )
)


def url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as an OpenAI-compatible base URL, or ``None`` if it is http(s) with a host."""
    if not url.strip():
        return "is empty"
    if any(c.isspace() for c in url):
        return "contains whitespace"
    if "://" not in url:
        return "has no http:// or https:// scheme"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"has the scheme {parts.scheme + ':'!r}; only http and https reach an API"
    if not parts.hostname:
        return "has no host"
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return "has an invalid port"
    return None


def not_llm_key(name: str) -> str | None:
    """What secret ``name`` holds when it is a well-known variable of another service, else ``None``."""
    return next((what for pattern, what in _NOT_LLM_KEYS if pattern.fullmatch(name)), None)


def _endpoint_list(urls: tuple[str, ...]) -> str | tuple[str, ...]:
    """A ``base_url`` list: non-empty, each an http(s) URL, none twice; a single entry is that URL, so
    its cache keys are those of the plain string."""
    if not urls:
        raise ValueError(
            "an empty list names no endpoint (list one or more servers of the model, e.g. "
            "[http://gpu1:8000/v1, http://gpu2:8000/v1], or omit base_url to use $OPENAI_BASE_URL or OpenAI)"
        )
    for i, url in enumerate(urls):
        if problem := url_problem(url):
            raise ValueError(f"entry {i} {url!r} {problem} ({_URL_HINT})")
    seen: set[str] = set()
    for url in urls:
        if url.rstrip("/") in seen:
            raise ValueError(f"{url!r} is listed twice (list each server once)")
        seen.add(url.rstrip("/"))
    return urls[0] if len(urls) == 1 else urls


def name_profiles(value: object) -> object:
    """A ``models:`` mapping with each profile's ``name`` set to its key (a ``mode="before"`` validator)."""
    if isinstance(value, dict):
        return {k: {**v, "name": k} if isinstance(v, dict) else v for k, v in value.items()}
    return value


def is_reasoning_model(model: str) -> bool:
    """OpenAI reasoning models reject ``temperature``/``top_p`` and ``max_tokens``."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(_REASONING_PREFIXES) and not name.startswith("gpt-5-chat")


class Prices(BaseModel):
    """USD per million tokens; overrides the built-in table in :mod:`synthgen.llm.usage`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class ModelProfile(BaseModel):
    """Everything needed to call one model on one OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(default="", description="the recipe key; set by the recipe loader, used in messages")
    model: str = Field(min_length=1, description="pin snapshots (gpt-4o-2024-08-06), not aliases")
    base_url: str | tuple[str, ...] | None = Field(
        default=None,
        description="default: $OPENAI_BASE_URL or OpenAI; a list: several servers of one model (see "
        "synthgen.llm.endpoints)",
    )
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    seed: int | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    structured_output: Literal["auto", "json_schema", "json_object"] = Field(
        default="auto",
        description="auto: probe the server (cached 24 h) and use json_schema where it enforces it, else "
        "json_object with the schema in the prompt, validated locally; or pin either mode",
    )
    max_concurrency: int = Field(default=16, gt=0, le=MAX_CONCURRENCY)
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="seconds per attempt")
    max_attempts: int = Field(default=8, ge=1, le=50)
    max_retry_seconds: float = Field(default=600.0, gt=0)
    max_reasks: int = Field(default=3, ge=0, le=10)
    prices: Prices | None = None
    http_backend: Literal["aiohttp", "httpx"] = "aiohttp"
    batch: bool = Field(
        default=False,
        description="send this profile's requests through OpenAI's Batch API (/v1/files + /v1/batches): "
        "half the price, answers within 24 h; same bodies, cache and validation (docs/batch.md)",
    )
    max_batch_requests: int = Field(
        default=MAX_BATCH_REQUESTS,
        ge=1,
        le=MAX_BATCH_REQUESTS,
        description="most requests per batch file (OpenAI allows 50,000 and 200 MB); also how many "
        "work items a batch step keeps live at once",
    )

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if isinstance(value, tuple):
            return _endpoint_list(value)
        problem = url_problem(value) if value is not None else None
        if problem:
            omit = "; omit it to use $OPENAI_BASE_URL or OpenAI" if not value else ""
            raise ValueError(f"{value!r} {problem} ({_URL_HINT}{omit})")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _llm_key_only(cls, value: str) -> str:
        what = not_llm_key(value)
        if what:
            raise ValueError(
                f"{value} holds {what}, not an LLM API key: a recipe naming it sends that secret to its "
                f"endpoint (export the endpoint's key in a variable of its own, e.g. export MY_LLM_KEY=..., "
                f"and name that; if this endpoint really takes this token, copy it: export MY_LLM_KEY=${value})"
            )
        return value

    @field_validator("extra_body")
    @classmethod
    def _no_secrets_in_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            lowered = key.lower()
            if "key" in lowered or ("token" in lowered and "max" not in lowered):
                raise ValueError(
                    f"extra_body may not carry {key!r}: put secrets in the env var api_key_env names"
                )
        return value

    @model_validator(mode="after")
    def _one_batch_endpoint(self) -> ModelProfile:
        if self.batch and isinstance(self.base_url, tuple):
            where = f"models.{self.name}." if self.name else ""
            raise ValueError(
                f"{where}batch: a batch lives on one provider's /v1/batches, not on a list of servers "
                "(give this profile one base_url, or set batch: false)"
            )
        return self

    @model_validator(mode="after")
    def _reasoning_params(self) -> ModelProfile:
        if is_reasoning_model(self.model):
            where = f"models.{self.name}." if self.name else ""
            for field in ("temperature", "top_p", "max_tokens"):
                if getattr(self, field) is not None:
                    fix = "use max_completion_tokens" if field == "max_tokens" else "remove it"
                    raise ValueError(
                        f"{where}{field}: {self.model} is a reasoning model and rejects {field} ({fix})"
                    )
        return self

    @property
    def resolved_base_url(self) -> str:
        """``base_url``, else ``$OPENAI_BASE_URL`` (checked here: the recipe loader never sees it), else OpenAI.

        For a list of endpoints: the sorted list, comma-separated. It names the pool (in messages, probe
        and cache keys), never a server to send to: which endpoint answers does not change the key.
        """
        if isinstance(self.base_url, tuple):
            return ", ".join(sorted(self.endpoints))
        if self.base_url:
            return self.base_url.rstrip("/")
        env = os.environ.get("OPENAI_BASE_URL", "")
        if not env:
            return DEFAULT_BASE_URL
        problem = url_problem(env)
        if problem:
            raise ConfigError(
                f"$OPENAI_BASE_URL {env!r} {problem}; this profile has no base_url, so it would use it",
                field=f"{self._where()}.base_url",
                hint="export OPENAI_BASE_URL=http://HOST:PORT/v1 (or https://HOST/v1), or set base_url in the profile",
            )
        return env.rstrip("/")

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The servers requests go to: the ``base_url`` list in its order, else the one resolved URL."""
        if isinstance(self.base_url, tuple):
            return tuple(url.rstrip("/") for url in self.base_url)
        return (self.resolved_base_url,)

    @property
    def servers(self) -> int:
        """How many servers the profile spreads over (1 unless ``base_url`` is a list); no env lookup."""
        return len(self.base_url) if isinstance(self.base_url, tuple) else 1

    def at(self, url: str) -> ModelProfile:
        """This profile on one of its endpoints (its own HTTP pool, limiter and probe entry)."""
        return self.model_copy(update={"base_url": url})

    def _where(self) -> str:
        return f"models.{self.name}" if self.name else "profile"

    def api_key(self, *, required: bool = True) -> str:
        """Read the key from the environment at call time; it is never stored on the profile."""
        key = os.environ.get(self.api_key_env, "")
        if not key and required:
            raise AuthenticationFailed(
                f"no API key: ${self.api_key_env} is empty",
                field=f"models.{self.name}.api_key_env" if self.name else "api_key_env",
                hint=f"export {self.api_key_env}=... or run with --offline",
            )
        return key

    def sampling(self) -> dict[str, Any]:
        """Sampling parameters that change the answer: they are part of the cache key."""
        params: dict[str, Any] = {}
        for field in (
            "temperature",
            "top_p",
            "max_tokens",
            "max_completion_tokens",
            "reasoning_effort",
            "seed",
            "stop",
        ):
            value = getattr(self, field)
            if value is not None:
                params[field] = value
        return params

    def limit_key(self) -> tuple[str, str, str]:
        """Providers limit per account and model, not per recipe role."""
        return (self.resolved_base_url, self.model, self.api_key_env)

    def with_name(self, name: str) -> ModelProfile:
        return self.model_copy(update={"name": name})
