"""Merging our card with the one on the Hub, so publishing never loses what a person wrote by hand.

Our YAML keys and ``##`` sections (:data:`synthgen.card.sections.GENERATED_SECTIONS`) are regenerated
on every publish; foreign keys and sections are kept, in their order, before our footer. The merge is
idempotent, so an unchanged dataset republishes byte-identical and makes no commit.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from synthgen.card.sections import GENERATED_SECTIONS
from synthgen.card.training import training_section

__all__ = ["merge_card", "split_card", "with_repo"]

_FOOTER = "Citation"
_FRONT = re.compile(r"\A\s*---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")


def split_card(text: str) -> tuple[dict[str, Any], str, list[tuple[str, str]]]:
    """(YAML metadata, text before the first ``##``, [(heading, section text)]); fences are skipped."""
    meta: dict[str, Any] = {}
    m = _FRONT.match(text)
    if m:
        loaded = yaml.safe_load(m.group(1))
        meta = loaded if isinstance(loaded, dict) else {}
        text = text[m.end() :]
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        f = _FENCE.match(line)
        if f and (fence is None or (f.group(1)[0] == fence[0] and len(f.group(1)) >= len(fence))):
            fence = None if fence else f.group(1)
        heading = _HEADING.match(line.rstrip("\r\n")) if fence is None else None
        if heading:
            sections.append((heading.group(1).strip(), [line]))
        else:
            (sections[-1][1] if sections else preamble).append(line)
    return meta, "".join(preamble), [(h, "".join(lines)) for h, lines in sections]


def _key(heading: str) -> str:
    return " ".join(heading.lower().split())


def merge_card(generated: str, remote: str) -> str:
    """Our card, plus what a person added on the Hub: foreign YAML keys and foreign ``##`` sections.

    Keys and sections we generate are ours (regenerated each time); foreign sections keep their order
    and go before our footer (Citation). Merging is idempotent, so an unchanged dataset republishes
    byte-identical and makes no commit.
    """
    ours, preamble, sections = split_card(generated)
    theirs, _, remote_sections = split_card(remote)
    owned = {_key(h) for h, _ in sections} | {_key(h) for h in GENERATED_SECTIONS}
    extra_meta = {k: v for k, v in theirs.items() if k not in ours}
    extra = [text.rstrip() + "\n\n" for h, text in remote_sections if _key(h) not in owned]
    if not extra_meta and not extra:
        return generated
    footer = next((i for i, (h, _) in enumerate(sections) if _key(h) == _key(_FOOTER)), len(sections))
    body = [text for _, text in sections[:footer]] + extra + [text for _, text in sections[footer:]]
    front = yaml.safe_dump({**ours, **extra_meta}, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{preamble}" + "".join(body)


def with_repo(card: str, repo_id: str) -> str:
    """The card with its ``## How to train`` section naming ``repo_id`` (publish knows the repo)."""
    meta, _, sections = split_card(card)
    configs = [c.get("config_name") for c in meta.get("configs", []) if isinstance(c, dict)]
    new = training_section(repo_id, [c for c in configs if c]).rstrip() + "\n\n"
    for heading, text in sections:
        if _key(heading) == _key("How to train"):
            return card.replace(text, new, 1)
    return card
