"""The embedded offline provider: an HTTP transport that answers like a chat-completions server.

It plugs into the SDK's own HTTP client (``httpx2.AsyncClient(transport=OfflineTransport())``), so
``--offline`` runs take the production path (client, limits, cache, schema validation) with no key
and no network. Answers are deterministic per request and sample index, schema-valid for
structured requests, in the request's language, and extractive from the request so demo data reads
plausibly:

* text and answer-like fields: the sentences of the request's ``<facts>`` block (else its system
  turn) that best overlap the last user turn (a follow-up that overlaps none: its earlier user turns,
  leaving out what the assistant already said); a referral to the office when nothing does;
* question-like fields: the ``<seed_question>`` block reworded when the ``<history>`` block is
  empty, else a follow-up question;
* score-like fields: when the request holds ``<reference>`` and ``<answer>`` blocks, the word
  overlap of the two (or, if higher, how much of the answer the reference and ``<facts>`` support),
  so grounded answers outscore ungrounded ones as a real judge's would.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from typing import Any

import httpx2

from synthgen.llm.usage import count_message_tokens, count_tokens

__all__ = ["OFFLINE_MODEL_SUFFIX", "OFFLINE_VERSION", "OfflineTransport", "offline_reply"]

OFFLINE_MODEL_SUFFIX = "offline"
# part of the cache key of offline answers: bump it when the answers change, or caches serve old ones
OFFLINE_VERSION = "3"
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPANISH = {"el", "la", "de", "que", "y", "en", "los", "las", "del", "se", "por", "una", "para", "con", "es"}
_ENGLISH = {"the", "of", "and", "to", "in", "is", "for", "that", "with", "on", "are", "you", "be", "this"}
_STOP = _SPANISH | _ENGLISH | {"a", "un", "o", "al", "lo", "su", "mi", "me", "it", "an", "or", "as"}
_OPENERS = {
    "es": [
        "Hola, una duda: ",
        "Buenas, quería preguntar: ",
        "Perdonad la molestia, ",
        "Hola. ",
        "Una consulta: ",
    ],
    "en": [
        "Hi, quick question: ",
        "Hello, I wanted to ask: ",
        "Sorry to bother you, ",
        "Hi. ",
        "A question: ",
    ],
}
_FOLLOWUPS = {
    "es": [
        "¿Y qué plazo tengo para hacerlo?",
        "¿Tengo que presentar algún documento más?",
        "¿Dónde lo presento?",
        "Vale, gracias. ¿Y si no llego a tiempo?",
        "Perfecto, muchas gracias, eso era todo.",
    ],
    "en": [
        "And what is the deadline?",
        "Do I need any other document?",
        "Where do I submit it?",
        "OK, thanks. And if I miss the deadline?",
        "Great, thank you, that was all.",
    ],
}
_RATIONALE = {
    "es": "La respuesta se valora por su coincidencia con los hechos de referencia ({overlap:.0%}).",
    "en": "The answer is rated by its agreement with the reference facts ({overlap:.0%}).",
}
_REFERRAL = {
    "es": "No dispongo de esa información; te recomiendo consultarlo con la Secretaría de la Facultad.",
    "en": "I do not have that information; please ask the Faculty office.",
}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def _language(text: str) -> str:
    words = _WORD.findall(text.lower())
    spanish = sum(w in _SPANISH for w in words)
    english = sum(w in _ENGLISH for w in words)
    return "en" if english > spanish else "es"


def _block(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return match.group(1).strip() if match else None


class _Request:
    """What the offline answerer extracts from one chat-completions request."""

    def __init__(self, body: dict[str, Any], sample: str) -> None:
        messages = body.get("messages") or []
        self.body = body
        self.text = "\n".join(str(m.get("content") or "") for m in messages)
        self.system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
        users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
        self.last_user = users[-1] if users else ""
        self.earlier_users = users[:-1]
        self.said = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "assistant")
        self.turns = len(users)
        self.history = (_block(self.text, "history") or "").strip()
        self.language = _language(self.text)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode() + sample.encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))

    def answer(self) -> str:
        facts = re.sub(r"<[^<>]*>", "\n", _block(self.text, "facts") or self.system)
        sentences = [
            s.strip() for s in _SENTENCE.split(facts) if len(s.strip()) > 20 and not s.strip().startswith("<")
        ]
        question = _words(self.last_user)
        scored = sorted(
            ((len(question & _words(s)) + self.rng.random() * 0.5, s) for s in sentences), reverse=True
        )
        if (not scored or scored[0][0] < 1) and self.earlier_users:
            # a follow-up ("¿y dónde lo presento?") is read in the context of the conversation, as a
            # model would: sentences on its earlier questions that no assistant turn has said yet
            context = _words(" ".join(self.earlier_users)) | question
            fresh = [s for s in sentences if s not in self.said]
            scored = sorted(
                ((len(context & _words(s)) / 2 + self.rng.random() * 0.5, s) for s in fresh), reverse=True
            )
        if not scored or scored[0][0] < 1:
            return _REFERRAL[self.language]
        keep = 1 + self.rng.randrange(min(3, len(scored)))
        return " ".join(s for _, s in scored[:keep])

    def question(self) -> str:
        if self.history:
            return self.rng.choice(_FOLLOWUPS[self.language])
        seed = _block(self.text, "seed_question") or self.last_user
        questions = [q.strip() for q in re.findall(r"[¿]?[^.?!\n¿<>]{12,}\?", seed)] or [seed.strip()]
        base = self.rng.choice(questions) or self.rng.choice(_FOLLOWUPS[self.language])
        opener = self.rng.choice(_OPENERS[self.language])
        return opener + base[0].lower() + base[1:]

    def overlap(self) -> float:
        reference, answer = _block(self.text, "reference"), _block(self.text, "answer")
        if reference is None or answer is None:
            return self.rng.random()
        ref, ans = _words(reference), _words(answer)
        coverage = len(ref & ans) / max(1, len(ref | ans)) ** 0.5 / max(1, len(ref)) ** 0.5
        # an answer built from the other verified facts the judge is shown (a follow-up about a
        # related seed) is supported, as the rubric says, though it covers little of the reference
        allowed = ref | _words(_block(self.text, "facts") or "")
        support = len(ans & allowed) / max(1, len(ans))
        return max(coverage, 0.6 * support)

    def string(self, name: str) -> str:
        lowered = name.lower()
        if any(k in lowered for k in ("question", "pregunta", "message", "mensaje", "query", "turn")):
            return self.question()
        if any(k in lowered for k in ("rationale", "reason", "explanation", "justification", "razon")):
            return _RATIONALE[self.language].format(overlap=self.overlap())
        return self.answer()

    def fill(self, schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
        """A JSON instance of ``schema`` (the strict subset OpenAI structured outputs accept)."""
        if "$ref" in schema:
            return self.fill(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
            return self.fill(options[0], defs, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            props = schema.get("properties", {})
            return {key: self.fill(sub, defs, key) for key, sub in props.items()}
        if kind == "array":
            low = schema.get("minItems", 1)
            high = max(low, min(schema.get("maxItems", 3), 3))
            item = schema.get("items", {"type": "string"})
            return [self.fill(item, defs, name) for _ in range(self.rng.randint(low, high))]
        if kind in ("integer", "number"):
            low = schema.get("minimum", 1)
            high = schema.get("maximum", 10)
            if any(k in name.lower() for k in ("score", "rating", "puntu", "nota")):
                value = low + (high - low) * min(1.0, self.overlap() * 1.6) + self.rng.uniform(-1, 1)
                value = min(high, max(low, value))
            else:
                value = self.rng.uniform(low, high)
            return round(value) if kind == "integer" else round(value, 2)
        if kind == "boolean":
            if any(k in name.lower() for k in ("satisf", "done", "stop", "finish", "end")):
                return self.history.count("\n") >= 2 and self.rng.random() < 0.5
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.string(name)


def _schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = fmt["json_schema"]["schema"]
        return schema
    if fmt.get("type") == "json_object":
        for message in reversed(body.get("messages") or []):
            content = str(message.get("content") or "")
            start = content.find("JSON schema:\n")
            if start >= 0:
                found: dict[str, Any] = json.loads(content[start + len("JSON schema:\n") :])
                return found
        return {"type": "object", "properties": {}}
    return None


def offline_reply(body: dict[str, Any], sample: str = "0") -> dict[str, Any]:
    """The chat.completion object the offline provider returns for a request body."""
    request = _Request(body, sample)
    schema = _schema_of(body)
    if schema is None:
        content = (
            request.answer() if request.turns and "<facts>" in request.text else request.string("answer")
        )
    else:
        content = json.dumps(request.fill(schema, schema.get("$defs", {})), ensure_ascii=False)
    prompt_tokens = count_message_tokens(body.get("messages") or [])
    completion_tokens = count_tokens(content)
    model = str(body.get("model", "model"))
    return {
        "id": "chatcmpl-offline-" + hashlib.sha256(content.encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{model}-{OFFLINE_MODEL_SUFFIX}",
        "system_fingerprint": "fp_synthgen_offline",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


class OfflineTransport(httpx2.AsyncBaseTransport):
    """Answers ``POST .../chat/completions`` in-process; anything else is a 404."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            error = {"error": {"message": f"offline provider has no {request.url.path}", "type": "not_found"}}
            return httpx2.Response(404, json=error, request=request)
        body = json.loads(await request.aread())
        reply = offline_reply(body, request.headers.get("x-synthgen-sample", "0"))
        return httpx2.Response(200, json=reply, request=request)
