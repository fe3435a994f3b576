"""Output rows, with the column names TRL and the alignment-handbook consume without conversion.

``sft`` rows are ultrachat_200k-shaped (``messages``; no ``prompt`` column, which TRL would read as
prompt-completion data). ``prefs`` rows are TRL's conversational explicit-prompt preference format:
``prompt`` is a list of messages ending in a user turn, ``chosen``/``rejected`` one assistant message
each, so ``DPOTrainer`` takes them unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Candidate", "ChatMessage", "DialogueRow", "PreferenceRow", "prompt_id"]

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


def _dump(messages: Sequence[ChatMessage | dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m.model_dump() if isinstance(m, ChatMessage) else {"role": m["role"], "content": m["content"]}
        for m in messages
    ]


def prompt_id(messages: Sequence[ChatMessage | dict[str, Any]] | str) -> str:
    """sha256 hex of a prompt: a string as is, a message list as canonical JSON."""
    text = (
        messages
        if isinstance(messages, str)
        else json.dumps(_dump(messages), ensure_ascii=False, sort_keys=True)
    )
    return hashlib.sha256(text.encode()).hexdigest()


class DialogueRow(BaseModel):
    """One simulated conversation (``sft`` config)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage]
    prompt_id: str = Field(description="sha256 of the first user turn")
    dialogue_id: str
    seed_ids: list[str]
    topic: str
    persona: str
    generator: str
    model: str = Field(description="the assistant's response model, as the server reported it")


class Candidate(BaseModel):
    """One scored candidate answer; every candidate is kept for provenance."""

    model_config = ConfigDict(extra="forbid")

    model: str
    variant: str
    content: str
    score: float
    rationale: str


class PreferenceRow(BaseModel):
    """One chosen/rejected pair (``prefs`` config)."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[ChatMessage] = Field(description="context ending in a user turn")
    chosen: list[ChatMessage]
    rejected: list[ChatMessage]
    score_chosen: float
    score_rejected: float
    prompt_id: str = Field(description="sha256 of the whole prompt")
    seed_ids: list[str]
    topic: str
    candidates: list[Candidate]
    judge_model: str
    generator: str
