"""The request synthgen posts is the one ``chat.completions.create`` would send; answers read back
strictly when they can be, leniently when a server strays from the SDK's types, never silently wrong."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from synthgen.llm.retries import Malformed
from synthgen.llm.wire import poster, read_completion
from tests.servers.openai_server import OpenAIServer, ServerConfig

MESSAGES = [{"role": "system", "content": "Eres un juez."}, {"role": "user", "content": "¿Nota?"}]


async def test_the_posted_body_and_headers_are_what_create_sends() -> None:
    seen: list[dict[str, Any]] = []

    def responder(request: dict[str, Any]) -> None:
        seen.append(request)

    params: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "temperature": 0.7,
        "max_completion_tokens": 50,
        "seed": 3,
        "response_format": {"type": "json_object"},
        "extra_body": {"top_k": 5, "temperature": 0.2},  # merged over the body, as the SDK does
        "extra_headers": {"x-synthgen-sample": "2"},
    }
    with OpenAIServer(ServerConfig(responder=responder)) as server:
        sdk = openai.AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
        async with sdk:
            created = await sdk.chat.completions.create(messages=MESSAGES, **params)  # type: ignore[arg-type]
            posted = await poster(sdk, params)(MESSAGES)
    assert seen[0] == seen[1]
    # the loopback derives its answer from the body's bytes: equal answers, equal bytes
    assert seen[1]["temperature"] == 0.2 and seen[1]["top_k"] == 5
    assert read_completion(posted.content).choices[0].message.content == created.choices[0].message.content


def test_an_answer_off_the_sdks_types_is_read_leniently() -> None:
    body = {
        "id": "x",
        "object": "chat.completion.custom",  # not the SDK's literal
        "model": "llama3",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hola"}, "finish_reason": "stop"}
        ],
    }  # no "created", as some servers answer
    completion = read_completion(json.dumps(body).encode())
    assert completion.choices[0].message.content == "hola"
    assert completion.model == "llama3"


@pytest.mark.parametrize("body", [b'{"id": "cut", "choi', b"<html>502</html>", b"[1, 2]", b'{"choices": 3}'])
def test_a_body_that_is_no_completion_is_malformed(body: bytes) -> None:
    with pytest.raises(Malformed, match="unparseable 200 response"):
        read_completion(body)
