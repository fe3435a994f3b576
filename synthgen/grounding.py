"""The grounding contract, in one place for sft, prefs and evaluation.

The assistant *sees* the seed facts in a ``<facts>`` block; the *published* system turn is the
recipe's deployment prompt alone (``closed_book``: the trained model answers from what it learned),
or the prompt followed by the same facts (``in_context``: retrieval-style training).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from synthgen.seeds import Seed

__all__ = ["LANGUAGE_NAMES", "facts_block", "language_name", "published_system_prompt"]

LANGUAGE_NAMES = {
    "es": "español", "en": "English", "ca": "català", "gl": "galego", "eu": "euskara",
    "pt": "português", "fr": "français", "it": "italiano", "de": "Deutsch",
}  # fmt: skip


def language_name(code: str) -> str:
    """What prompts say ("answer in español"): models follow a name better than an ISO code."""
    return LANGUAGE_NAMES.get(code, code)


def facts_block(seeds: Sequence[Seed]) -> str:
    """The ``<facts>`` block: the assistant's grounding, and the published context under ``in_context``.

    Each question sits in a ``<fact question="...">`` tag (language-neutral, plainly not text to quote),
    so answers quote the facts rather than echo the questions.
    """
    facts = [f'<fact question="{s.question.replace(chr(34), chr(39))}">\n{s.answer}\n</fact>' for s in seeds]
    return "<facts>\n" + "\n".join(facts) + "\n</facts>"


def published_system_prompt(
    system_prompt: str, grounding: Literal["closed_book", "in_context"], facts: str
) -> str:
    """The system turn of a published row (and of evaluation prompts)."""
    return system_prompt if grounding == "closed_book" else f"{system_prompt}\n\n{facts}"
