"""A chat-completions request on the wire: posted through the SDK's own client, read back fast.

Why not ``chat.completions.create``: before sending, it walks every message and the response
format through the SDK's typed-dict transform (~0.45 ms of a ~2 ms request, for plain JSON it
leaves unchanged), and after, it builds the completion with the SDK's recursive ``construct``
(~0.1 ms). ``AsyncOpenAI.post`` is the SDK's documented way to send a body as it is: the same
client, auth, headers, timeouts and status errors (``RateLimitError``...), none of that work. The
answer is validated by pydantic's compiled validator (~5 us); a server whose answer strays from
the SDK's types is read leniently, as the SDK would, and a body that is not JSON at all is
:class:`~synthgen.llm.retries.Malformed` (retried). See benchmarks/README.md for the profile.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx2
import openai
import pydantic
from openai.types.chat import ChatCompletion

from synthgen.llm.retries import Malformed

__all__ = ["poster", "read_completion"]

Post = Callable[[Sequence[dict[str, str]]], Awaitable[httpx2.Response]]


def poster(sdk: openai.AsyncOpenAI, params: dict[str, Any]) -> Post:
    """``post(messages)``: one request of ``params`` (as ``create`` takes them) through ``sdk``.

    The body is what ``create`` would send, byte for byte: ``model``, ``messages``, the other
    parameters in ``create``'s (alphabetical) order, and ``extra_body`` merged over them;
    ``extra_headers`` go out as headers.
    """
    rest = {k: params[k] for k in sorted(params) if k not in ("model", "extra_headers", "extra_body")}
    extra = params.get("extra_body") or {}
    options: openai.RequestOptions = {"security": {"bearer_auth": True}}
    if params.get("extra_headers"):
        options["headers"] = params["extra_headers"]
    model = params["model"]

    async def post(messages: Sequence[dict[str, str]]) -> httpx2.Response:
        body = {"model": model, "messages": messages, **rest, **extra}
        return await sdk.post("/chat/completions", cast_to=httpx2.Response, body=body, options=options)

    return post


def read_completion(body: bytes) -> ChatCompletion:
    """The completion in a 200's body; :class:`Malformed` if it is not one."""
    try:
        return ChatCompletion.model_validate_json(body)
    except pydantic.ValidationError:
        pass  # not JSON, or JSON off the SDK's types (a server's own fields): read as the SDK does
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Malformed(f"unparseable 200 response: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("choices", []), list):
        raise Malformed(f"unparseable 200 response: not a chat completion ({type(data).__name__})")
    return ChatCompletion.construct(**data)
