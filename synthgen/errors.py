"""One exception tree for synthgen.

Every error a user can cause or fix is a ``SynthgenError``; the CLI maps it to a message and exit
code 2 (bad input) or 1 (runtime failure). Errors carry where (``path``, ``line``, ``field``) and
what to do (``hint``) so the message reads ``file:line: field: message (hint)``::

    SynthgenError                      exit_code 2 unless stated
    ├── ConfigError                    a recipe, profile or option is wrong
    │   ├── SeedError                  a seeds file is wrong
    │   ├── RecipeError                a recipe file is wrong
    │   └── GeneratorNotFound          no generator of that name is installed
    ├── ProviderError                  the LLM endpoint refused the request (exit 2: fix config)
    │   └── AuthenticationFailed       401/403: key missing or wrong
    ├── CompletionFailed               one request ended without a valid answer (exit 1); the
    │                                  runner records it as a failure, it never kills a run
    ├── BudgetExceeded                 spending would pass budget.max_usd (exit 1)
    ├── ResumeError                    a RUN_DIR cannot be resumed with this recipe
    ├── RunDirLocked                   another process is running, finalizing or publishing it
    ├── RunFailed                      no rows, or too many failed items (exit 1); the dataset
    │                                  already in the RUN_DIR is kept
    ├── PublishError                   publishing refused: token, RUN_DIR, repo id
    │   ├── PersonalDataFound          the privacy gate found personal data (``report``)
    │   └── PublishFailed              the Hub failed after bounded retries (exit 1)
    └── TrainerError                   a trainer preflight failed
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "CompletionFailed",
    "ConfigError",
    "GeneratorNotFound",
    "PersonalDataFound",
    "ProviderError",
    "PublishError",
    "PublishFailed",
    "RecipeError",
    "ResumeError",
    "RunDirLocked",
    "RunFailed",
    "SeedError",
    "SynthgenError",
    "TrainerError",
]


class SynthgenError(Exception):
    """Base of every synthgen error; ``str()`` is the full, user-facing message."""

    exit_code: int = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{field}{self.message}{hint}"


class ConfigError(SynthgenError):
    """Something the user wrote (recipe, profile, option) is invalid."""


class SeedError(ConfigError):
    """A seeds file is invalid; always names the file, the line (when known) and the field."""


class RecipeError(ConfigError):
    """A recipe file is invalid; rendered as ``file: field.path: message (hint)``."""


class GeneratorNotFound(ConfigError):
    """No generator of that name is registered under the ``synthgen.generators`` entry points."""


class ProviderError(SynthgenError):
    """The endpoint rejected the request in a way retrying cannot fix (400, 404, bad parameter)."""


class AuthenticationFailed(ProviderError):
    """401/403, or no key in the environment variable a profile names."""


class CompletionFailed(SynthgenError):
    """One request ended without a valid answer after bounded retries and re-asks.

    ``reason`` is a short machine-readable label (``rate_limited``, ``server_error``,
    ``invalid_json``, ``schema``, ``refusal``, ``length``, ``timeout``, ...) used in failure reports.
    """

    exit_code = 1

    def __init__(self, message: str, *, reason: str, attempts: int = 0, **kwargs: object) -> None:
        self.reason = reason
        self.attempts = attempts
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class BudgetExceeded(SynthgenError):
    """Live spend reached ``budget.max_usd``; nothing new is scheduled."""

    exit_code = 1


class ResumeError(SynthgenError):
    """A RUN_DIR was made by a different recipe fingerprint and cannot be resumed."""


class RunDirLocked(SynthgenError):
    """Another process holds the RUN_DIR (run, finalize or publish): one writer at a time."""


class RunFailed(SynthgenError):
    """The run produced no rows or failed too many items; the RUN_DIR's previous dataset is kept."""

    exit_code = 1


class PublishError(SynthgenError):
    """Publishing was refused: a missing or rejected token, a bad RUN_DIR or repo id (fix, rerun)."""


class PersonalDataFound(PublishError):
    """The privacy gate found personal data; ``report`` (a ``PrivacyReport``) says where each hit is."""

    def __init__(self, message: str, *, report: object, **kwargs: object) -> None:
        self.report = report
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class PublishFailed(PublishError):
    """The Hub failed (5xx, network) after bounded retries; the local RUN_DIR is unchanged."""

    exit_code = 1


class TrainerError(SynthgenError):
    """A trainer preflight check failed before any training step."""
