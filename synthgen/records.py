"""Output rows, with the column names TRL and the alignment-handbook consume without conversion.

``sft`` rows are ultrachat_200k-shaped (``messages``; no ``prompt`` column, which TRL would read as
prompt-completion data). ``prefs`` rows are TRL's conversational explicit-prompt preference format:
``prompt`` is a list of messages ending in a user turn, ``chosen``/``rejected`` one assistant message
each, so ``DPOTrainer`` takes them unchanged.

:data:`OUTPUT_KINDS` is the one table of what a generator may output (its ``output``): per kind, the
row model a row must validate against, the text two rows must not share (dedup), and the assistant
text that claim verification checks. Code that treats kinds differently looks them up here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.seeds import Seed

__all__ = [
    "OUTPUT_KINDS",
    "Candidate",
    "ChatMessage",
    "DialogueRow",
    "OutputKind",
    "PreferenceRow",
    "output_kind",
    "prompt_id",
]

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


# --- the output-kind table -------------------------------------------------------------------------


def _sft_dedup(row: Mapping[str, Any]) -> str:
    return "\n".join(m["content"] for m in row["messages"] if m["role"] == "user")


def _prefs_dedup(row: Mapping[str, Any]) -> str:
    # the system turn is the same everywhere: the prompt's other turns and the chosen answer
    return "\n".join(m["content"] for m in [*row["prompt"], *row["chosen"]] if m["role"] != "system")


def _seeds_dedup(row: Mapping[str, Any]) -> str:
    return str(row.get("question", json.dumps(dict(row), sort_keys=True, default=str)))


@dataclass(frozen=True)
class OutputKind:
    """One kind of row a generator outputs; ``name`` is also the RUN_DIR config it lands in."""

    name: str
    row_model: type[BaseModel]
    dedup_text: Callable[[Mapping[str, Any]], str]
    answers: Callable[[Mapping[str, Any]], list[str]]  # what claim verification checks
    # rows published as ``generated/<name>.jsonl`` (for review) rather than as a config's parquet splits
    generated: bool = False

    def validate(self, row: Mapping[str, Any]) -> None:
        """Raise pydantic's ValidationError unless ``row`` (less runner bookkeeping) is of this kind."""
        self.row_model.model_validate({k: v for k, v in row.items() if not k.startswith("__")})


OUTPUT_KINDS: dict[str, OutputKind] = {
    "sft": OutputKind(
        "sft",
        DialogueRow,
        _sft_dedup,
        lambda row: [m["content"] for m in row["messages"] if m["role"] == "assistant"],
    ),
    "prefs": OutputKind("prefs", PreferenceRow, _prefs_dedup, lambda row: [row["chosen"][0]["content"]]),
    "seeds": OutputKind("seeds", Seed, _seeds_dedup, lambda row: [], generated=True),
}


def output_kind(name: str) -> OutputKind:
    return OUTPUT_KINDS[name]
