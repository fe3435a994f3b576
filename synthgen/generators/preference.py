"""Preference pairs, the UltraFeedback / Zephyr way: sample K candidates, grade each, keep best vs worse.

The prompt is a seed question, or a user turn of an upstream dialogue (a prefix of it). K candidates
come from a pool of (profile, grounded, temperature) specs, so their quality really varies. Grounded
candidates are the dialogue generator's assistant: its ``assistant`` template with the seed facts in
a ``<facts>`` block, so chosen answers stay close to the SFT data DPO starts from. Ungrounded ones
see only the deployment system prompt, as the trained model will. The judge grades every candidate
against the answers of the facts' seeds. The best one is chosen; the rejected one is drawn among
those at least ``margin`` below it. Nearly equal candidates teach DPO nothing, so a pair without that
gap is rejected as a ``tie``. A pair whose best answer is still poor teaches the wrong thing, so it is
rejected as ``all_bad``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.determinism import item_seed
from synthgen.errors import ConfigError
from synthgen.generators.base import Generator, GeneratorContext, Rejected, WorkItem
from synthgen.generators.fanout import gather
from synthgen.grounding import facts_block, language_name, published_system_prompt
from synthgen.judge.rubric import RUBRIC_ROLE, Grade, grade
from synthgen.llm.client import Completion
from synthgen.llm.profile import ModelProfile, is_reasoning_model
from synthgen.records import PreferenceRow, prompt_id
from synthgen.seeds import Seed

__all__ = ["PoolMember", "PreferenceGenerator"]

ASSISTANT_ROLE = "assistant"
Message = dict[str, str]
# what generate reads of an upstream dialogue row: an item holds these, not a copy of the whole row
_UPSTREAM_FIELDS = ("seed_ids", "messages", "topic")


class PoolMember(BaseModel):
    """One entry of the candidate pool; ``temperature`` overrides the profile's."""

    model_config = ConfigDict(extra="forbid")

    profile: str
    grounded: bool = True
    temperature: float | None = Field(default=None, ge=0, le=2)


def _default_pool() -> list[PoolMember]:
    # Interleaved so any K >= 2 drawn cyclically mixes grounded and ungrounded candidates.
    return [PoolMember(profile="assistant", grounded=g) for g in (True, False, True, False)]


class PreferenceGenerator(Generator):
    """K graded candidates per prompt -> one (chosen, rejected) pair in TRL's conversational format."""

    name: ClassVar[str] = "preference"
    version: ClassVar[str] = "1"
    output: ClassVar[Literal["prefs"]] = "prefs"
    card_method = (
        "UltraFeedback-style judging: for a user turn of each dialogue, K candidate answers come from a "
        "pool of grounded and ungrounded profiles; a judge scores each 1-10 against the seed answer with "
        "a rubric; the best becomes `chosen` and a worse one, by at least the configured margin, "
        "`rejected`."
    )
    description: ClassVar[str] = "UltraFeedback-style pairs: K candidates graded by an LLM judge"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        candidates: int = Field(default=4, ge=2, le=16, description="K candidates per prompt")
        judge: str = Field(default="judge", description="model profile of the judge")
        pool: list[PoolMember] = Field(
            default_factory=_default_pool, min_length=1, description="drawn cyclically for the K candidates"
        )
        margin: float = Field(default=1.0, ge=0, description="least score gap between chosen and rejected")
        min_chosen_score: float = Field(default=6.0, ge=1, le=10, description="below it: rejected as all_bad")
        context: Literal["last", "random"] = Field(
            default="random", description="which user turn of an upstream dialogue ends the prompt"
        )
        related_seeds: int = Field(
            default=3, ge=0, description="without upstream: other seeds of the topic added to the facts"
        )

    config: Config

    def profiles_used(self) -> list[str]:
        return list(dict.fromkeys([self.config.judge, *(spec.profile for spec in self.config.pool)]))

    def prompt_roles(self) -> list[str]:
        grounded = [ASSISTANT_ROLE] if any(spec.grounded for spec in self.config.pool) else []
        return [*grounded, RUBRIC_ROLE]

    def plan(
        self,
        seeds: Sequence[Seed],
        splits: Mapping[str, str],
        recipe_seed: int,
        step: str,
        upstream: Sequence[Mapping[str, Any]] = (),
    ) -> list[WorkItem]:
        """One item per upstream dialogue when the step reads one (carrying the few fields of the row
        it uses), else one per seed (carrying nothing: ``generate`` draws its related seeds from the
        seed's topic and split with ``ctx.related``, as the dialogue generator does, so no test seed's
        answer reaches a training pair and the plan stays linear in the seeds)."""
        if upstream:
            return [
                WorkItem(
                    id=str(row["dialogue_id"]),
                    seed_ids=tuple(row["seed_ids"]),
                    split=splits[row["seed_ids"][0]],
                    rng_seed=item_seed(recipe_seed, step, str(row["dialogue_id"])),
                    payload={k: row[k] for k in _UPSTREAM_FIELDS if k in row},
                )
                for row in upstream
            ]
        return [
            WorkItem(
                id=s.id, seed_ids=(s.id,), split=splits[s.id], rng_seed=item_seed(recipe_seed, step, s.id)
            )
            for s in seeds
        ]

    async def generate(self, item: WorkItem, ctx: GeneratorContext) -> list[dict[str, Any]]:
        cfg = self.config
        rng = item.rng()  # draw order: related seeds, prompt turn, tie-break, rejected
        seeds = self._grounding(item, ctx, rng)
        facts = facts_block(seeds)
        prompt = self._prompt(item, ctx, facts, rng)
        turns = [m for m in prompt if m["role"] != "system"]
        language = language_name(ctx.language)
        grounded = ctx.prompts.render(
            ASSISTANT_ROLE, system_prompt=ctx.system_prompt, facts=facts, language=language
        )
        specs = [cfg.pool[k % len(cfg.pool)] for k in range(cfg.candidates)]

        async def candidate(k: int, spec: PoolMember) -> tuple[Completion, str]:
            profile = _with_temperature(ctx.profiles[spec.profile], spec.temperature)
            system = grounded if spec.grounded else ctx.system_prompt
            messages = [{"role": "system", "content": system}, *turns]
            completion = await ctx.client.complete(
                messages, profile=profile, sample=k, version=ctx.version, call="candidate"
            )
            return completion, _variant(spec, profile)

        answers = await gather(candidate(k, spec) for k, spec in enumerate(specs))
        # The first seed answers the question; its related seeds' facts may be used without penalty.
        reference, extra = seeds[0].answer, "\n\n".join(s.answer.strip() for s in seeds[1:])
        judge = ctx.profiles[cfg.judge]
        grades: list[Grade] = await gather(
            grade(
                ctx.client,
                judge,
                conversation=prompt,
                answer=completion.content,
                reference=reference,
                facts=extra,
                language=language,
                prompts=ctx.prompts,
                version=ctx.version,
            )
            for completion, _ in answers
        )
        chosen, rejected = self._pick([g.score for g in grades], rng)
        row = {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": answers[chosen][0].content}],
            "rejected": [{"role": "assistant", "content": answers[rejected][0].content}],
            "score_chosen": grades[chosen].score,
            "score_rejected": grades[rejected].score,
            "prompt_id": prompt_id(prompt),
            "seed_ids": [s.id for s in seeds],
            "topic": str(item.payload.get("topic") or seeds[0].topic),
            "candidates": [
                {
                    "model": c.model,
                    "variant": variant,
                    "content": c.content,
                    "score": g.score,
                    "rationale": g.rationale,
                }
                for (c, variant), g in zip(answers, grades, strict=True)
            ],
            "judge_model": grades[chosen].judge_model,
            "generator": self.name,
        }
        return [PreferenceRow.model_validate(row).model_dump()]

    def _grounding(self, item: WorkItem, ctx: GeneratorContext, rng: random.Random) -> list[Seed]:
        """The seeds whose answers ground the candidates and the judge: a dialogue's own seeds (what
        its assistant saw), else the seed plus up to ``related_seeds`` of its topic and split."""
        if "seed_ids" in item.payload:
            return [ctx.seeds[i] for i in item.payload["seed_ids"]]
        seed = ctx.seeds[item.seed_ids[0]]
        return [seed, *ctx.related(seed, self.config.related_seeds, rng)]

    def _prompt(self, item: WorkItem, ctx: GeneratorContext, facts: str, rng: random.Random) -> list[Message]:
        """Published context ending in a user turn: a dialogue prefix, or system + the seed question."""
        published = published_system_prompt(ctx.system_prompt, ctx.grounding, facts)
        messages = item.payload.get("messages")
        if not messages:
            question = ctx.seeds[item.seed_ids[0]].question
            return [{"role": "system", "content": published}, {"role": "user", "content": question}]
        dialogue = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        users = [i for i, m in enumerate(dialogue) if m["role"] == "user"]
        if not users:
            raise Rejected("no_user_turn", f"dialogue {item.id} has no user turn")
        end = users[-1] if self.config.context == "last" else rng.choice(users)
        prefix = dialogue[: end + 1]
        if prefix[0]["role"] != "system":
            prefix.insert(0, {"role": "system", "content": published})
        return prefix

    def _pick(self, scores: Sequence[float], rng: random.Random) -> tuple[int, int]:
        """(chosen, rejected) indices: best (ties by rng), and an rng draw among those margin below."""
        best = max(scores)
        chosen = rng.choice([i for i, s in enumerate(scores) if s == best])
        if best < self.config.min_chosen_score:
            raise Rejected(
                "all_bad", f"best score {best:.2f} < min_chosen_score {self.config.min_chosen_score}"
            )
        worse = [i for i, s in enumerate(scores) if i != chosen and s <= best - self.config.margin]
        if not worse:
            raise Rejected("tie", f"no candidate scores {self.config.margin} below the best ({best:.2f})")
        return chosen, rng.choice(worse)


def _with_temperature(profile: ModelProfile, temperature: float | None) -> ModelProfile:
    if temperature is None:
        return profile
    if is_reasoning_model(profile.model):
        raise ConfigError(
            f"{profile.model} is a reasoning model and rejects temperature",
            field="pool.temperature",
            hint=f"remove the temperature of the pool entry for {profile.name!r}",
        )
    return profile.model_copy(update={"temperature": temperature})


def _variant(spec: PoolMember, profile: ModelProfile) -> str:
    temperature = "default" if profile.temperature is None else f"{profile.temperature:g}"
    return f"{spec.profile}/{'grounded' if spec.grounded else 'ungrounded'}/t={temperature}"
