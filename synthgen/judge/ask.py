"""The one request every judge mode makes: render a template, ask for a schema, keep the metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from synthgen.llm.client import ChatClient
    from synthgen.llm.profile import ModelProfile
    from synthgen.prompts import PromptLibrary

__all__ = ["Judged"]


VerdictT = TypeVar("VerdictT", bound=BaseModel)


@dataclass(frozen=True)
class Judged(Generic[VerdictT]):
    """One judge call's parsed verdict, with the model that answered and whether it came from cache."""

    verdict: VerdictT
    judge_model: str
    cached: bool


async def ask(
    client: ChatClient,
    profile: ModelProfile,
    prompts: PromptLibrary,
    role: str,
    schema: type[VerdictT],
    version: str,
    language: str | None,
    **values: str,
) -> Judged[VerdictT]:
    """Render ``role`` with the stripped ``values``, ask for ``schema``; the one request of every mode."""
    texts = {k: v.strip() for k, v in values.items()}
    content = prompts.render(role, **texts, language=language or prompts.language)
    completion = await client.complete(
        [{"role": "user", "content": content}], profile=profile, schema=schema, version=version, call="judge"
    )
    return Judged(completion.parsed, completion.model, completion.cached)
