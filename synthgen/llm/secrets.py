"""Keep secrets out of every message synthgen builds from something a server sent back.

Some servers and proxies quote the request's ``Authorization`` header in their error bodies; a
message built from such a body would carry the key into the terminal, journals, ``failures.jsonl``
and the logs. :func:`scrub` replaces the values of the named environment variables (and of the
well-known ones, always), plus anything shaped like a bearer token or a provider key, with ``***``.
Other wings call it too (the Hub client scrubs with ``HF_TOKEN``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["ALWAYS_SCRUBBED", "MASK", "scrub", "secret_values"]

MASK = "***"
#: Env vars whose values are scrubbed whatever a caller names: the SDKs' own key variables.
ALWAYS_SCRUBBED = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
#: Shorter values are not scrubbed: replacing every "abc" in a message would garble it, and no real
#: key is that short.
MIN_SECRET_LENGTH = 8

_SHAPES = (
    # an RFC 6750 b64token after "Bearer" (or "Basic" credentials), 12+ characters so that prose such
    # as "missing bearer token" stays readable; the scheme word is kept
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9\-._~+/]{12,}=*", re.IGNORECASE), rf"\1\2{MASK}"),
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-) and alike; "sk-learn" and short words are spared
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{10,}"), f"sk-{MASK}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), f"hf_{MASK}"),  # Hugging Face tokens
)


def secret_values(names: Iterable[str] = ()) -> list[str]:
    """The values of ``names`` and of :data:`ALWAYS_SCRUBBED` in the environment, longest first."""
    values = {os.environ.get(name, "") for name in (*names, *ALWAYS_SCRUBBED)}
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub(text: str, names: Iterable[str] = (), *, shapes: bool = True) -> str:
    """``text`` without the values of env vars ``names`` (plus the SDKs' own) and key-shaped tokens.

    Values go first (longest first, so a key containing another is masked whole), then the shapes:
    a key that is not key-shaped is still found by value, a key from another variable by its shape.
    ``shapes=False`` masks values only: for generated content, where "sk-..." may be an example.
    """
    for value in secret_values(names):
        text = text.replace(value, MASK)
    if not shapes:
        return text
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text
