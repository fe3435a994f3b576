"""The ``faq`` generator: one-turn FAQ answers to the seed questions, rewritten for an audience.

For each seed (``per_seed`` times) the assistant profile answers the seed question from a ``<facts>``
block holding the seed's answer, in the register of ``audience``. The published row is a one-turn
``sft`` dialogue: the recipe's deployment system prompt (plus the facts under ``grounding:
in_context``), the seed question, the answer. Because the facts sit in a ``<facts>`` block and the
question is the last user turn, the offline provider answers it extractively, so ``--offline`` works.

Only synthgen's public API is used (``from synthgen import ...``): nothing here reaches into synthgen
internals, so synthgen upgrades do not break it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgen import (
    ChatMessage,
    DialogueRow,
    Generator,
    GeneratorContext,
    Rejected,
    Seed,
    WorkItem,
    item_seed,
    prompt_id,
)

__all__ = ["FaqGenerator", "facts_block"]

_LANGUAGE_NAMES = {"es": "español", "en": "English"}
# One style per item, drawn from item.rng(): variety across items that is reproducible run after run.
_STYLES = {
    "es": ("en dos o tres frases", "empezando por lo que hay que hacer", "con pasos breves si hay varios"),
    "en": ("in two or three sentences", "starting with what to do", "as short steps if there are several"),
}


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
    # templates in synthgen_faq/prompts/<language>/faq.txt: recorded in run.json with their sha256,
    # and a recipe can override them (`prompts: {faq: my_faq.txt}`) like synthgen's own
    prompt_package = __package__

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

    def prompt_roles(self) -> list[str]:
        return ["faq"]  # `synthgen validate` loads it; its hash is part of the recipe fingerprint

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
        template = ctx.prompts.get("faq")  # this package's template, or the recipe's override
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
