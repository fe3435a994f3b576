"""Structured output: the strict JSON schema sent for a pydantic model, and the words of a re-ask.

The schema is the SDK's own strict conversion (``openai.pydantic_function_tool``), built once per
class: ``chat.completions.parse`` rebuilds it, and a generic parsed object, on every call (a third
of a request's client CPU, see benchmarks/README.md). Answers are validated by the client against
the same model; what fails is re-asked with the validation error.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import openai
import pydantic

__all__ = ["describe", "json_schema", "reask_message", "response_format", "with_schema_note"]

Message = dict[str, str]


@functools.lru_cache(maxsize=256)
def response_format(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The strict ``json_schema`` response format for ``schema``, built once per class.

    ``chat.completions.parse`` rebuilds it on every call and then constructs a generic
    ``ParsedChatCompletion``: together a third of a request's client CPU. Sending the same strict
    schema (the SDK's own ``pydantic_function_tool`` conversion) through ``create`` and validating
    in ``_validate`` sends the same request and applies the same checks.
    """
    strict = openai.pydantic_function_tool(schema)["function"]["parameters"]
    return {"type": "json_schema", "json_schema": {"schema": strict, "name": schema.__name__, "strict": True}}


@functools.lru_cache(maxsize=256)
def json_schema(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A schema class's JSON schema is fixed, but pydantic rebuilds it on every call (~0.25 ms)."""
    return schema.model_json_schema()


def describe(exc: pydantic.ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)


def reask_message(detail: str, schema: type[pydantic.BaseModel] | None = None) -> str:
    """The re-ask states the schema again: a server that ignores ``response_format`` (or a model that
    drifted from a prompt note many turns back) cannot follow a schema it is not shown."""
    text = f"Your previous answer did not validate: {detail}. Answer again with only the JSON object"
    if schema is None:
        return text + ", following the schema exactly."
    return f"{text}, which must validate against this JSON schema:\n{_schema_text(schema)}"


def _schema_text(schema: type[pydantic.BaseModel]) -> str:
    return json.dumps(json_schema(schema), ensure_ascii=False)


def with_schema_note(messages: list[Message], schema: type[pydantic.BaseModel]) -> list[Message]:
    """JSON mode has no schema: state it, since the model must still produce that shape."""
    note = "Respond with a single JSON object that validates against this JSON schema:\n" + _schema_text(
        schema
    )
    return [*messages, {"role": "system", "content": note}]
