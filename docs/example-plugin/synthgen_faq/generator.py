"""The ``faq`` generator: one-turn FAQ answers to the seed questions, rewritten for an audience.

For each seed (``per_seed`` times) the assistant profile answers the seed question from a ``<facts>``
block holding the seed's answer, in the register of ``audience``. The published row is a one-turn
``sft`` dialogue: the recipe's deployment system prompt (plus the facts under ``grounding:
in_context``), the seed question, the answer. Because the facts sit in a ``<facts>`` block and the
question is the last user turn, the offline provider answers it extractively, so ``--offline`` works.

Only the public generator API is used: ``synthgen`` (Generator, records) and ``synthgen.generator``
(``item_seed``); nothing here reaches into synthgen internals, so synthgen upgrades do not break it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgen import ChatMessage, DialogueRow, Generator, GeneratorContext, Rejected, Seed, WorkItem
from synthgen.generator import item_seed
from synthgen.prompts import PromptTemplate
from synthgen.records import prompt_id

__all__ = ["FaqGenerator", "facts_block", "load_template"]

_LANGUAGE_NAMES = {"es": "español", "en": "English"}
# One style per item, drawn from item.rng(): variety across items that is reproducible run after run.
_STYLES = {
    "es": ("en dos o tres frases", "empezando por lo que hay que hacer", "con pasos breves si hay varios"),
    "en": ("in two or three sentences", "starting with what to do", "as short steps if there are several"),
}


def load_template(language: str) -> PromptTemplate:
    """The package's own template for ``language`` (English when there is none)."""
    for lang in (language, "en"):
        resource = resources.files(__package__) / "prompts" / f"{lang}.txt"
        if resource.is_file():
            source = f"{__package__}/prompts/{lang}.txt"
            return PromptTemplate.parse(
                resource.read_text(encoding="utf-8"), role="faq", language=lang, source=source
            )
    raise FileNotFoundError(f"{__package__} ships no prompt template for {language!r} or 'en'")


def facts_block(seeds: Sequence[Seed]) -> str:
    """The ``<facts>`` block the offline provider (and a real model) answers from; questions go in a tag
    attribute so an extractive answer quotes the facts, never the questions."""
    facts = [f'<fact question="{s.question.replace(chr(34), chr(39))}">\n{s.answer}\n</fact>' for s in seeds]
    return "<facts>\n" + "\n".join(facts) + "\n</facts>"


class FaqGenerator(Generator):
    """One-turn FAQ answers (``sft`` rows) to each seed question, written for a given audience."""

    name = "faq"
    version = "1"  # bump to invalidate this generator's cached calls (e.g. after changing its logic)
    output = "sft"
    description = "one-turn FAQ answers to the seed questions, rewritten for an audience"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a typo in the recipe is an error, not ignored

        audience: str = Field(
            default="estudiantes de primer curso", min_length=1, description="who the answers are written for"
        )
        profile: str = Field(default="assistant", description="model profile that writes the answers")
        per_seed: int = Field(default=1, ge=1, le=20, description="answers per seed (distinct samples)")

    config: Config

    def profiles_used(self) -> list[str]:
        return [self.config.profile]  # `synthgen validate` checks the recipe defines it

    def plan(
        self,
        seeds: Sequence[Seed],
        splits: Mapping[str, str],
        recipe_seed: int,
        step: str,
        upstream: Sequence[Mapping[str, Any]] = (),
    ) -> list[WorkItem]:
        """``per_seed`` items per seed; ids are stable (they key the journal, resume and randomness)."""
        items = []
        for seed in seeds:
            for k in range(self.config.per_seed):
                item_id = f"{seed.id}/{k}"
                rng_seed = item_seed(recipe_seed, step, item_id)  # hash(recipe seed, item id)
                items.append(WorkItem(item_id, (seed.id,), splits[seed.id], rng_seed, payload={"variant": k}))
        return items

    async def generate(self, item: WorkItem, ctx: GeneratorContext) -> list[dict[str, Any]]:
        cfg = self.config
        seed = ctx.seeds[item.seed_ids[0]]
        template = load_template(ctx.language)
        rng = item.rng()  # the only source of randomness: never `random`, never completion order
        style = rng.choice(_STYLES.get(template.language, _STYLES["en"]))
        facts = facts_block([seed])
        system = template.render(
            system_prompt=ctx.system_prompt,
            audience=cfg.audience,
            facts=facts,
            style=style,
            language=_LANGUAGE_NAMES.get(ctx.language, ctx.language),
        )
        question = seed.question.strip()
        # sample=k: the k-th answer to a possibly identical request is a distinct cached sample.
        # CompletionFailed is not caught: the runner records it as this item's failure.
        reply = await ctx.complete(
            [{"role": "system", "content": system}, {"role": "user", "content": question}],
            profile=cfg.profile,
            sample=int(item.payload.get("variant", 0)),
        )
        answer = reply.content.strip()
        if not answer:
            raise Rejected("empty_answer", seed.id)
        if " ".join(answer.casefold().split()) == " ".join(question.casefold().split()):
            raise Rejected("echoed_question", seed.id)

        published = ctx.system_prompt if ctx.grounding == "closed_book" else f"{ctx.system_prompt}\n\n{facts}"
        row = DialogueRow(
            messages=[
                ChatMessage(role="system", content=published),
                ChatMessage(role="user", content=question),
                ChatMessage(role="assistant", content=answer),
            ],
            prompt_id=prompt_id(question),
            dialogue_id=hashlib.sha256(f"{ctx.step}/{item.id}".encode()).hexdigest()[:16],
            seed_ids=[seed.id],
            topic=seed.topic,
            persona=cfg.audience,
            generator=self.name,
            model=reply.model,
        )
        return [row.model_dump()]
