"""The ``dialogue`` generator: UltraChat-style simulated conversations, grounded in the seed facts.

A student simulator (playing a persona) rewords a seed question and asks follow-ups; an assistant
answers from a ``<facts>`` block holding the seed and a few seeds of the same topic. The published
row carries only the recipe's deployment system prompt (closed-book), so the trained model learns
to answer without the facts; ``grounding: in_context`` publishes the facts too.

Every call uses ``sample=0``: each item's prompts differ (persona, conversation number, history),
so cached answers are per item and a re-run reproduces the dataset. All randomness comes from
``item.rng()``, drawn in a fixed order, never from completion order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthgen.determinism import item_seed
from synthgen.errors import ConfigError
from synthgen.generators.base import Generator, GeneratorContext, Rejected, WorkItem
from synthgen.grounding import facts_block, language_name, published_system_prompt
from synthgen.records import ChatMessage, DialogueRow, prompt_id
from synthgen.seeds import Persona, Seed

__all__ = ["DialogueGenerator", "StudentTurn"]

MAX_TURNS = 12
# Speaker labels of the <history> block, in the student template's language (the student is "you").
_LABELS = {"es": ("Tú", "Asistente"), "en": ("You", "Assistant")}
_NONE = {"es": "(ninguna)", "en": "(none)"}
_DEFAULT_PERSONA = {
    "es": Persona(
        id="default",
        name="Estudiante de la Facultad",
        register="neutral",
        urgency="media",
        situation="Estudiante de grado de la Facultad con una duda administrativa concreta.",
    ),
    "en": Persona(
        id="default",
        name="Student of the Faculty",
        register="neutral",
        urgency="medium",
        situation="An undergraduate student of the Faculty with a specific administrative question.",
    ),
}


class StudentTurn(BaseModel):
    """The student simulator's structured answer: the next message and whether it has more to ask."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="the student's next message, in character")
    satisfied: bool = Field(description="true when the student has no further questions")


def _normalized(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" ¿?¡!.")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class DialogueGenerator(Generator):
    """Simulated student<->assistant conversations (``sft`` rows), one per seed x ``per_seed``."""

    name = "dialogue"
    version = "1"
    output = "sft"
    card_method = (
        "UltraChat-style simulation: a student-simulator model writes the opening question in a persona's"
        " voice and the follow-ups; the assistant model answers seeing the seed's facts (the seed and "
        "related seeds of its topic). One work item is a seed x persona x variant."
    )
    description = "UltraChat-style student/assistant dialogues grounded in the seed facts"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        per_seed: int = Field(default=4, ge=1, le=1000, description="dialogues per seed")
        turns: tuple[int, int] = Field(default=(2, 4), description="min and max number of student turns")
        student: str = Field(default="student", description="model profile of the student simulator")
        assistant: str = Field(default="assistant", description="model profile of the assistant")
        related_seeds: int = Field(default=3, ge=0, description="other seeds of the topic added to the facts")
        personas: list[str] | None = Field(default=None, description="restrict to these persona ids")

        @field_validator("turns")
        @classmethod
        def _turn_range(cls, value: tuple[int, int]) -> tuple[int, int]:
            low, high = value
            if not 1 <= low <= high <= MAX_TURNS:
                raise ValueError(
                    f"turns must be [min, max] with 1 <= min <= max <= {MAX_TURNS}, got [{low}, {high}]"
                )
            return value

    config: Config

    def profiles_used(self) -> list[str]:
        return [self.config.student, self.config.assistant]

    def prompt_roles(self) -> list[str]:
        return ["student", "assistant"]

    def plan(
        self,
        seeds: Sequence[Seed],
        splits: Mapping[str, str],
        recipe_seed: int,
        step: str,
        upstream: Sequence[Mapping[str, Any]] = (),
    ) -> list[WorkItem]:
        """``per_seed`` items per seed. An item carries only its variant number: its related seeds are
        drawn in ``generate`` from the seed's topic and split (``ctx.related``), so a test seed's answer
        never reaches a training dialogue and the plan stays linear in the seeds (a list of the topic's
        other seeds per item made it quadratic)."""
        items = []
        for seed in seeds:
            split = splits[seed.id]
            for k in range(self.config.per_seed):
                item_id = f"{seed.id}/{k}"
                rng_seed = item_seed(recipe_seed, step, item_id)
                items.append(WorkItem(item_id, (seed.id,), split, rng_seed, {"variant": k}))
        return items

    async def generate(self, item: WorkItem, ctx: GeneratorContext) -> list[dict[str, Any]]:
        cfg = self.config
        seed = ctx.seeds[item.seed_ids[0]]
        template_language = ctx.prompts.get("student").language
        rng = item.rng()  # draw order is part of the dataset's identity: persona, turns, related seeds
        persona = rng.choice(self._personas(ctx, template_language))
        n_turns = rng.randint(*cfg.turns)
        related = ctx.related(seed, cfg.related_seeds, rng)

        facts = facts_block([seed, *related])
        language = language_name(ctx.language)
        system_values = {"system_prompt": ctx.system_prompt, "facts": facts, "language": language}
        system = {"role": "system", "content": ctx.prompts.render("assistant", **system_values)}
        none = _NONE.get(template_language, "-")
        student_values = {
            "persona_name": persona.name,
            "persona_situation": persona.situation,
            "persona_register": persona.register,
            "persona_urgency": persona.urgency,
            "persona_mistakes": "; ".join(persona.typical_mistakes) or none,
            "seed_question": seed.question,
            "related_questions": "\n".join(f"- {s.question}" for s in related) or none,
            "variant": int(item.payload.get("variant", 0)) + 1,
            "language": language,
        }
        you, assistant = _LABELS.get(template_language, _LABELS["en"])
        labels = {"user": you, "assistant": assistant}

        conversation: list[dict[str, str]] = []
        model = ""
        while len(conversation) // 2 < n_turns:
            history = "\n".join(f"{labels[m['role']]}: {_one_line(m['content'])}" for m in conversation)
            prompt = ctx.prompts.render("student", **student_values, history=history)
            turn = await self._student(ctx, prompt, sample=0)
            if not conversation and _normalized(turn.message) == _normalized(seed.question):
                turn = await self._student(ctx, prompt, sample=1)
                if _normalized(turn.message) == _normalized(seed.question):
                    raise Rejected("verbatim_seed_question", seed.id)
            if turn.satisfied and len(conversation) // 2 >= cfg.turns[0]:
                break
            conversation.append({"role": "user", "content": turn.message.strip()})
            reply = await ctx.complete([system, *conversation], profile=cfg.assistant, call="assistant")
            if not reply.content.strip():
                raise Rejected("empty_turn", "assistant")
            conversation.append({"role": "assistant", "content": reply.content.strip()})
            model = reply.model

        published = published_system_prompt(ctx.system_prompt, ctx.grounding, facts)
        messages = [ChatMessage(role="system", content=published)]
        row = DialogueRow(
            messages=messages + [ChatMessage.model_validate(m) for m in conversation],
            prompt_id=prompt_id(conversation[0]["content"]),
            dialogue_id=hashlib.sha256(f"{ctx.step}/{item.id}".encode()).hexdigest()[:16],
            seed_ids=[seed.id, *(s.id for s in related)],
            topic=seed.topic,
            persona=persona.id,
            generator=self.name,
            model=model,
        )
        return [row.model_dump()]

    async def _student(self, ctx: GeneratorContext, prompt: str, *, sample: int) -> StudentTurn:
        request = [{"role": "user", "content": prompt}]
        profile = self.config.student
        completion = await ctx.complete(
            request, profile=profile, schema=StudentTurn, sample=sample, call="student"
        )
        turn: StudentTurn = completion.parsed
        if not turn.message.strip():
            raise Rejected("empty_turn", "student")
        return turn

    def _personas(self, ctx: GeneratorContext, language: str) -> list[Persona]:
        wanted = self.config.personas
        if wanted is None:
            return list(ctx.personas) or [_DEFAULT_PERSONA.get(language, _DEFAULT_PERSONA["en"])]
        known = {p.id for p in ctx.personas}
        missing = [p for p in wanted if p not in known]
        if missing or not wanted:
            raise ConfigError(
                f"unknown persona id(s): {', '.join(missing) or '(empty list)'}",
                field="config.personas",
                hint=f"known: {', '.join(sorted(known)) or 'none (add a personas file to the recipe)'}",
            )
        return [p for p in ctx.personas if p.id in wanted]
