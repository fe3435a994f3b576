"""Simulating a step's items in-process, for the estimate and the budget's per-item reservation.

A :class:`Simulator` is a :class:`~synthgen.llm.client.ChatClient` whose ``complete`` asks the
embedded offline provider directly (:func:`~synthgen.llm.offline.offline_reply`): the generator, its
prompts and its call structure (turns, candidates, judge calls, schema answers) are the real ones,
but no SDK request is built, serialized, sent through a transport and parsed back, which was two
thirds of an offline call's CPU (a whole-recipe simulation took 27 s before the first paid request).
Token counts are the offline provider's, as a ``--offline`` run reports them.

Requests are keyed as the run's cache keys them (model, messages, sampling, schema, sample, the
caller's cache version). A request an earlier step sent (the preference step's grounded first
candidate is the dialogue's assistant turn) is counted as the run will see it: a cache hit, free.
A request sent twice within a step is counted as paid both times: such repeats come from offline
answers that coincide (two ungrounded candidates both referring to the office, then graded by the
same judge request), which a real model's answers do not.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pydantic

from synthgen.errors import CompletionFailed
from synthgen.generators.base import Rejected, WorkItem
from synthgen.llm.answer import Completion
from synthgen.llm.cache import fingerprint
from synthgen.llm.client import ChatClient, Message
from synthgen.llm.offline import offline_reply
from synthgen.llm.profile import ModelProfile, Prices
from synthgen.llm.structured import response_format
from synthgen.llm.usage import TokenUsage, attributed
from synthgen.pipeline.plan import StepPlan

__all__ = ["ItemUsage", "Simulator", "simulate"]

_FREE = Prices(input=0, output=0)


class Simulator(ChatClient):
    """Offline answers without the HTTP round trip; one per estimate, so its memory of requests
    sent (for cache hits) spans every step, as the response cache spans a run."""

    def __init__(self) -> None:
        super().__init__(offline=True)
        self.step = ""  # the step being simulated: set by :func:`simulate`
        self._sent: dict[str, tuple[str, Completion]] = {}

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        profile: ModelProfile,
        schema: type[pydantic.BaseModel] | None = None,
        sample: int = 0,
        version: str = "",
        call: str = "",
    ) -> Completion:
        body: dict[str, object] = {"model": profile.model, "messages": list(messages), **profile.sampling()}
        if schema is not None:
            body["response_format"] = response_format(schema)
        # the schema's name stands for its JSON schema here: one simulation holds one class per name
        key = fingerprint(
            {
                "model": profile.model,
                "messages": body["messages"],
                "sampling": profile.sampling(),
                "schema": schema.__name__ if schema else None,
                "sample": sample,
                "version": version,
            }
        )
        if (sent := self._sent.get(key)) is not None:
            step, answer = sent
            if step == self.step:
                self.meter.record(answer.model, dataclasses.replace(answer.usage), _FREE)
            else:
                self.meter.record_cached(answer.model, answer.usage)
            return answer
        reply = offline_reply(body, str(sample))
        content = reply["choices"][0]["message"]["content"]
        usage = TokenUsage(
            requests=1,
            prompt_tokens=reply["usage"]["prompt_tokens"],
            completion_tokens=reply["usage"]["completion_tokens"],
        )
        self.meter.record(profile.model, usage, _FREE)
        try:
            parsed = schema.model_validate_json(content) if schema is not None else None
        except pydantic.ValidationError as exc:  # the offline provider fills schemas: not expected
            raise CompletionFailed(str(exc)[:300], reason="schema_violation", attempts=1) from None
        completion = Completion(
            content=content,
            parsed=parsed,
            model=profile.model,
            system_fingerprint=None,
            finish_reason="stop",
            usage=usage,
            cached=False,
            attempts=1,
            key=key,
        )
        self._sent[key] = (self.step, completion)
        return completion


@dataclass
class ItemUsage:
    """One simulated item: its rows, and its requests per model (paid apart from cache-served)."""

    rows: list[dict[str, object]]
    paid: dict[str, TokenUsage]
    cached: dict[str, TokenUsage]


async def simulate(
    plan: StepPlan, items: Iterable[WorkItem], simulator: Simulator, workers: int = 16
) -> list[ItemUsage]:
    """Generate ``items`` on ``simulator``, in item order; failed or rejected items give no rows."""
    recipe = plan.recipe
    simulator.step = plan.step.name
    ctx = plan.context(simulator, recipe.models, recipe.prompt_library())
    items = list(items)
    out: list[ItemUsage | None] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for i, item in queue:
            with attributed() as meter:
                try:
                    rows = await plan.generator.generate(item, ctx)
                except (CompletionFailed, Rejected):
                    rows = []
            out[i] = ItemUsage(rows, _models(meter.by_model), _models(meter.cached_by_model))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return [u for u in out if u is not None]


def _models(by_model: dict[str, TokenUsage]) -> dict[str, TokenUsage]:
    return {
        model: TokenUsage(
            requests=u.requests, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens
        )
        for model, u in by_model.items()
    }
