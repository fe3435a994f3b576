"""Quality filters: every generated row is kept or rejected with a stable reason label and a detail.

Rejections land in ``rejected.jsonl`` and ``run.json`` counts, so each filter says *why* in words a
reviewer can check. Checks are cheap, local heuristics (no model calls): a row that fails one is
cheaper to regenerate than to train on. Claim-level verification belongs to the judge, not here.

Text is compared in two forms: :func:`tokenize` (casefolded, NFC, accents kept: "matrícula" is one
token) and a folded form with accents stripped, so that phrase patterns and word overlaps survive a
student typing "matricula" or "segun". Reasons: ``length``, ``json_fragment``, ``language``, ``role_flip``,
``ai_disclaimer``, ``hidden_context``, ``answer_leak``, ``missing_referral``, ``low_judge_score``,
``near_duplicate``, ``duplicate``, ``bad_structure``, ``not_words`` (a short turn with no word of the
recipe's language), ``off_topic`` (a dialogue that does not address its seed), ``echo`` (an answer that
repeats the student's turn).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from synthgen.quality.text import (
    LANGUAGES,
    MIN_DETECT_CHARS,
    content_words,
    detect_language,
    fold,
    folded_tokens,
    known_words,
    language_model,
    ngrams,
)

if TYPE_CHECKING:
    from synthgen.seeds import Seed

__all__ = [
    "QualityConfig",
    "Rejection",
    "Turn",
    "check_dialogue",
    "check_preference",
    "check_row",
]


_LEAK_RATIO = 0.6  # share of the answer's own content words a student turn may not repeat


_LEAK_MIN_WORDS = 4  # the ratio is meaningless on answers this short ("Sí, en la secretaría.")


_COVERAGE = 0.2  # below this share of a question's content words in the facts, it is not covered


_STEM = 6  # crude truncation stemming for coverage: "matricularme" ~ "matrícula"


_DISCLAIMERS = (
    "como modelo de lenguaje", "como modelo de ia", "como inteligencia artificial", "como una ia",
    "como ia", "soy una ia", "soy una inteligencia artificial", "soy un modelo de lenguaje",
    "as an ai", "as a language model", "as an artificial intelligence", "i am an ai", "i'm an ai",
    "i am a language model",
)  # fmt: skip


_HIDDEN_CONTEXT = (
    "según la información proporcionada", "con la información proporcionada",
    "en la información proporcionada", "según la información que me has dado",
    "según la información facilitada", "según el contexto", "en el contexto proporcionado",
    "en los datos que me has dado", "según los datos proporcionados", "en los datos proporcionados",
    "según los hechos", "en los hechos proporcionados", "según el texto",
    "según los documentos proporcionados",
    "according to the information provided", "according to the provided information",
    "based on the information provided", "based on the context", "based on the provided context",
    "in the provided context", "in the context provided", "in the provided facts", "according to the facts",
    "based on the facts provided",
)  # fmt: skip


_REFERRAL = (
    "secretaría*", "oficina*", "te recomiendo consultar*", "le recomiendo consultar*", "puedes consultar*",
    "consulta con", "consúltalo*", "contact*", "no dispongo", "no tengo información",
    "no tengo esa información", "no tengo datos", "no puedo confirmar*", "sede electrónica", "página web",
    "office*", "i don't have", "i do not have", "please ask", "check with", "reach out",
)  # fmt: skip


_USER_AS_ASSISTANT = (
    "en qué puedo ayudarte", "en qué puedo ayudarle", "en qué te puedo ayudar", "en qué le puedo ayudar",
    "como asistente", "soy el asistente", "soy la asistente", "estimado estudiante", "estimada estudiante",
    "espero haberte ayudado", "how can i help you", "how may i assist you", "as your assistant",
    "i am the assistant", "dear student", "i hope this helps",
)  # fmt: skip


_ASSISTANT_AS_USER = (
    "tengo una duda", "soy estudiante de", "soy alumno de", "soy alumna de", "quería preguntar",
    "quería saber", "gracias por la información", "gracias por tu respuesta", "i have a question",
    "i am a student", "i'm a student", "i wanted to ask", "thanks for the information",
)  # fmt: skip


class QualityConfig(BaseModel):
    """The recipe's ``quality:`` block. Patterns are phrases matched case- and accent-insensitively at
    word boundaries, punctuation ignored; a trailing ``*`` also matches longer words ("contact*")."""

    model_config = ConfigDict(extra="forbid")

    min_turn_chars: int = Field(2, ge=0)
    max_turn_chars: int = Field(4000, ge=1)
    check_language: bool = True  # also: short turns must be words of the language (``not_words``)
    check_topic: bool = True  # the dialogue addresses its seed (``off_topic``)
    language_confidence: float = Field(0.8, ge=0.0, le=1.0)
    near_duplicate_threshold: float = Field(0.85, gt=0.0, le=1.0)
    min_judge_score: float | None = None
    require_referral: bool = True
    leak_ngram: int = Field(8, ge=2)
    referral_patterns: list[str] = Field(default_factory=lambda: list(_REFERRAL))
    hidden_context_patterns: list[str] = Field(default_factory=lambda: list(_HIDDEN_CONTEXT))
    disclaimer_patterns: list[str] = Field(default_factory=lambda: list(_DISCLAIMERS))
    user_role_flip_patterns: list[str] = Field(default_factory=lambda: list(_USER_AS_ASSISTANT))
    assistant_role_flip_patterns: list[str] = Field(default_factory=lambda: list(_ASSISTANT_AS_USER))
    verify_claims: str | None = Field(
        None, description="judge profile: every assistant turn's claims are checked against its seed facts"
    )
    max_unsupported_claims: int = Field(0, ge=0, description="claims not in (or against) the facts tolerated")


@dataclass(frozen=True)
class Rejection:
    """Why a row was dropped: ``reason`` is a stable label (counted), ``detail`` is for humans."""

    reason: str
    detail: str


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for pattern in patterns:
        folded = fold(pattern.rstrip("*"))
        if folded:
            parts.append(re.escape(folded) + (r"\w*" if pattern.endswith("*") else ""))
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)") if parts else None


def _find(text: str, patterns: Sequence[str]) -> str | None:
    """The first pattern occurrence in ``text`` (folded), or None."""
    matcher = _matcher(tuple(patterns))
    found = matcher.search(fold(text)) if matcher else None
    return found.group(0) if found else None


Turn = tuple[str, str, str]  # (label for details, role, content)


def _messages(value: Any, name: str) -> list[Turn] | Rejection:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        return Rejection("bad_structure", f"{name} must be a non-empty list of messages")
    turns = []
    for i, message in enumerate(value):
        message = message.model_dump() if isinstance(message, BaseModel) else message
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            return Rejection("bad_structure", f"{name}[{i}] is not a {{role, content}} message")
        if not content.strip():
            return Rejection("bad_structure", f"{name}[{i}] ({role}) is empty")
        turns.append((f"{name}[{i}]", role, content))
    return turns


def _alternating(turns: list[Turn], name: str, last: str) -> list[Turn] | Rejection:
    """Drop a leading system turn; the rest must alternate user/assistant and end with ``last``."""
    rest = turns[1:] if turns[0][1] == "system" else turns
    if not rest:
        return Rejection("bad_structure", f"{name} has no user turn")
    for i, (label, role, _) in enumerate(rest):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            return Rejection("bad_structure", f"{label} is {role}, expected {expected}")
    if rest[-1][1] != last:
        return Rejection(
            "bad_structure",
            f"{name} must end with {'an assistant' if last == 'assistant' else 'a user'} turn",
        )
    return rest


def _snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _length(turns: Iterable[Turn], config: QualityConfig) -> Rejection | None:
    for label, role, content in turns:
        n = len(content.strip())
        if not config.min_turn_chars <= n <= config.max_turn_chars:
            bounds = f"{config.min_turn_chars}..{config.max_turn_chars}"
            return Rejection("length", f"{label} ({role}) has {n} characters, outside {bounds}")
    return None


def _language(turns: Iterable[Turn], language: str, config: QualityConfig) -> Rejection | None:
    if not config.check_language or language not in language_model().labels:
        return None  # a language the identifier cannot name cannot be checked
    candidates = (*LANGUAGES, language)
    for label, role, content in turns:
        found, probability = detect_language(content, candidates)
        if found not in ("und", language) and probability >= config.language_confidence:
            detail = (
                f"{label} ({role}) reads as {found!r} (p={probability:.2f}), recipe language is {language!r}"
            )
            return Rejection("language", detail)
    return None


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in content_words(folded_tokens(text))}


def _not_words(turns: Iterable[Turn], seeds: Sequence[Seed], language: str) -> Rejection | None:
    """A turn too short for language id must still be words: a third of its tokens known words of the
    language or words of its seeds ("Vale, gracias." passes; "Satisficado." does not)."""
    known = known_words(language)
    if known is None:
        return None  # no word list for this language: nothing to check against
    seed_words = {w[:_STEM] for s in seeds for w in folded_tokens(f"{s.topic} {s.question} {s.answer}")}
    for label, role, content in turns:
        tokens = folded_tokens(content)
        if len(content.strip()) >= MIN_DETECT_CHARS and len(tokens) > 3:
            continue  # the language check reads it
        words = [t for t in tokens if not t.isdigit()]
        hits = sum(t in known or t[:_STEM] in seed_words for t in words)
        if words and hits * 3 < len(words):
            detail = f"{label} ({role}) has {hits} of {len(words)} words known in {language!r}: {_snippet(content)}"
            return Rejection("not_words", detail)
    return None


def _off_topic(
    turns: Sequence[Turn], seeds: Sequence[Seed], patterns: Sequence[str], answers: bool
) -> Rejection | None:
    """The student's opening must share a content word with its seed's topic or question, and (with
    ``answers``: referrals required) each answer to a question must overlap the seed facts or refer
    the student on: "Satisfiesto." answers nothing."""
    if not seeds:
        return None  # a row whose seeds are unknown cannot be checked against them
    label, _, opening = turns[0]
    about = {w for s in seeds for w in _stems(f"{s.topic} {s.question}")}
    asked = _stems(opening)
    if asked and not asked & about:
        return Rejection("off_topic", f"{label} shares no word with its seed's question: {_snippet(opening)}")
    if not answers:
        return None
    facts = about | {w for s in seeds for w in _stems(s.answer)}
    for (_, _, question), (label, _, reply) in zip(turns[::2], turns[1::2], strict=False):
        if "?" not in question and len(_stems(question)) < 3:
            continue  # thanks and goodbyes are answered in kind ("good luck with your exams!")
        said = _stems(reply)
        if said and not said & facts and not _find(reply, patterns):
            return Rejection(
                "off_topic", f"{label} neither uses the seed facts nor refers on: {_snippet(reply)}"
            )
    return None


def _pattern(
    turns: Iterable[Turn], roles: set[str], patterns: Sequence[str], reason: str
) -> Rejection | None:
    for label, role, content in turns:
        found = _find(content, patterns) if role in roles else None
        if found:
            return Rejection(reason, f"{label} ({role}) says {found!r}: {_snippet(content)}")
    return None


_JSON_KEY = re.compile(r'^\s*[\[{]?\s*"[\w ]{1,40}"\s*:')


def _json_fragment(turns: Iterable[Turn]) -> Rejection | None:
    """A turn that is (part of) a JSON object: a model answered in the schema's shape where free text
    was asked for, or a structured answer leaked into the conversation."""
    for label, role, content in turns:
        text = content.strip()
        if _JSON_KEY.match(text) or (text[:1] in "{[" and text[-1:] in "}]" and _parses(text)):
            return Rejection("json_fragment", f"{label} ({role}) is JSON, not prose: {_snippet(content)}")
    return None


def _echo(turns: Sequence[Turn]) -> Rejection | None:
    """An answer that only repeats the student's turn, word for word (case, accents and punctuation
    aside): a weak teacher's commonest non-answer, and long enough to pass every length check."""
    for (_, _, question), (label, role, reply) in zip(turns[::2], turns[1::2], strict=False):
        said = folded_tokens(reply)
        if said and said == folded_tokens(question):
            return Rejection("echo", f"{label} ({role}) repeats the student's turn: {_snippet(reply)}")
    return None


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _leak(turns: Sequence[Turn], seeds: Sequence[Seed], n: int) -> Rejection | None:
    """A student turn that knows the answer beyond its question and what the assistant already said."""
    for seed in seeds:
        answer, question = folded_tokens(seed.answer), folded_tokens(seed.question)
        own_ngrams = ngrams(answer, n) - ngrams(question, n)
        own_words = content_words(answer) - content_words(question)
        said: list[str] = []
        for label, role, content in turns:
            tokens = folded_tokens(content)
            if role == "assistant":
                said += tokens
                continue
            shared = sorted(ngrams(tokens, n) & own_ngrams - ngrams(said, n))
            if shared:
                detail = f"{label} repeats {' '.join(shared[0])!r} from the answer of seed {seed.id!r}"
                return Rejection("answer_leak", detail)
            leaked = (content_words(tokens) & own_words) - content_words(said)
            if len(own_words) >= _LEAK_MIN_WORDS and len(leaked) >= _LEAK_RATIO * len(own_words):
                share = len(leaked) / len(own_words)
                detail = f"{label} holds {share:.0%} of the content words of the answer of seed {seed.id!r}"
                return Rejection("answer_leak", detail)
    return None


def _referral(turns: Sequence[Turn], seeds: Sequence[Seed], patterns: Sequence[str]) -> Rejection | None:
    """An uncovered question must be answered by a referral, not from the model's imagination."""
    facts = {w[:_STEM] for s in seeds for w in content_words(folded_tokens(f"{s.question} {s.answer}"))}
    for (label, _, question), (reply_label, _, reply) in zip(turns[::2], turns[1::2], strict=False):
        asked = {w[:_STEM] for w in content_words(folded_tokens(question))}
        if not asked or ("?" not in question and len(asked) < 3):
            continue  # thanks, greetings and acknowledgements need no coverage
        coverage = len(asked & facts) / len(asked)
        if coverage < _COVERAGE and not _find(reply, patterns):
            detail = (
                f"{label} is {coverage:.0%} covered by the seed facts and {reply_label} "
                f"answers without a referral: {_snippet(reply)}"
            )
            return Rejection("missing_referral", detail)
    return None


def _seeds_of(row: Mapping[str, Any], seeds: Mapping[str, Seed]) -> list[Seed]:
    """The row's seeds that are known; unknown ids cannot be checked against and are skipped."""
    return [seeds[i] for i in row.get("seed_ids") or () if i in seeds]


def check_dialogue(
    row: Mapping[str, Any], *, seeds: Mapping[str, Seed], language: str, config: QualityConfig
) -> Rejection | None:
    """The first reason to drop an ``sft`` row, or None to keep it."""
    turns = _messages(row.get("messages"), "messages")
    if isinstance(turns, Rejection):
        return turns
    turns = _alternating(turns, "messages", "assistant")
    if isinstance(turns, Rejection):
        return turns
    related = _seeds_of(row, seeds)
    return (
        _length(turns, config)
        or _json_fragment(turns)
        or _echo(turns)
        or _language(turns, language, config)
        or (_not_words(turns, related, language) if config.check_language else None)
        or _pattern(turns, {"user"}, config.user_role_flip_patterns, "role_flip")
        or _pattern(turns, {"assistant"}, config.assistant_role_flip_patterns, "role_flip")
        or _pattern(turns, {"assistant"}, config.disclaimer_patterns, "ai_disclaimer")
        or _pattern(turns, {"assistant"}, config.hidden_context_patterns, "hidden_context")
        or _leak(turns, related, config.leak_ngram)
        or (_referral(turns, related, config.referral_patterns) if config.require_referral else None)
        or (
            _off_topic(turns, related, config.referral_patterns, config.require_referral)
            if config.check_topic
            else None
        )
    )


def check_preference(
    row: Mapping[str, Any], *, seeds: Mapping[str, Seed], language: str, config: QualityConfig
) -> Rejection | None:
    """The first reason to drop a ``prefs`` row, or None to keep it. ``seeds`` is accepted for symmetry
    with :func:`check_dialogue` (the judge already graded the chosen answer against them)."""
    prompt = _messages(row.get("prompt"), "prompt")
    if isinstance(prompt, Rejection):
        return prompt
    prompt = _alternating(prompt, "prompt", "user")
    if isinstance(prompt, Rejection):
        return prompt
    answers: dict[str, Turn] = {}
    for name in ("chosen", "rejected"):
        turns = _messages(row.get(name), name)
        if isinstance(turns, Rejection):
            return turns
        if len(turns) != 1 or turns[0][1] != "assistant":
            return Rejection("bad_structure", f"{name} must be exactly one assistant message")
        answers[name] = turns[0]
    chosen, rejected = answers["chosen"], answers["rejected"]
    if fold(chosen[2]) == fold(rejected[2]):
        return Rejection("bad_structure", "chosen and rejected are the same text")
    score, minimum = row.get("score_chosen"), config.min_judge_score
    if minimum is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
        return Rejection("bad_structure", f"score_chosen must be a number, not {score!r}")
    low = minimum is not None and isinstance(score, int | float) and score < minimum
    return (
        _length([*prompt, chosen, rejected], config)
        or _json_fragment([*prompt, chosen, rejected])
        or _language([chosen], language, config)
        or (_not_words([chosen], _seeds_of(row, seeds), language) if config.check_language else None)
        or _pattern([chosen], {"assistant"}, config.disclaimer_patterns, "ai_disclaimer")
        or _pattern([chosen], {"assistant"}, config.hidden_context_patterns, "hidden_context")
        or (Rejection("low_judge_score", f"score_chosen {score} is below {minimum}") if low else None)
    )


#: the filters of each output kind that has any (generated seeds are checked by their generator)
ROW_FILTERS = {"sft": check_dialogue, "prefs": check_preference}


def check_row(
    kind: str, row: Mapping[str, Any], *, seeds: Mapping[str, Seed], language: str, config: QualityConfig
) -> Rejection | None:
    """The first reason to drop a row of output ``kind``, or None to keep it."""
    check = ROW_FILTERS.get(kind)
    return None if check is None else check(row, seeds=seeds, language=language, config=config)
