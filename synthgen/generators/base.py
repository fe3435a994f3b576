"""The generator API: what a built-in or third-party generator implements.

A generator is a subclass with a ``name``, a ``version`` (bump it to invalidate its cached calls),
an ``output`` kind (``sft``, ``prefs`` or ``seeds``), a nested pydantic ``Config`` (``extra="forbid"``;
a recipe step's ``config`` is validated against it) and one ``async generate(item, ctx)``. The
runner plans work items with :meth:`Generator.plan`, calls ``generate`` under the client's limits,
journals what comes back and applies the quality filters. ``generate`` returns rows (dicts in the
:mod:`synthgen.records` formats), raises :class:`Rejected` with a reason to drop an item on purpose,
and lets :class:`~synthgen.errors.CompletionFailed` propagate: the runner records it as a failure.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

from pydantic import BaseModel, ConfigDict

from synthgen.determinism import item_seed

if TYPE_CHECKING:
    from synthgen.llm.client import ChatClient, Completion
    from synthgen.llm.profile import ModelProfile
    from synthgen.prompts import PromptLibrary
    from synthgen.seeds import Persona, Seed

__all__ = [
    "Generator",
    "GeneratorContext",
    "Rejected",
    "WorkItem",
]

OutputName = Literal["sft", "prefs", "seeds"]


class Rejected(Exception):
    """A generator drops an item on purpose (a tie, all candidates bad, ...); ``reason`` is a label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class WorkItem:
    """One unit of work of a step. ``id`` is stable across runs: it keys the journal and resume."""

    id: str
    seed_ids: tuple[str, ...]
    split: str
    rng_seed: int
    payload: Mapping[str, Any] = field(default_factory=dict)

    def rng(self) -> random.Random:
        return random.Random(self.rng_seed)


class _Without(Sequence[str]):
    """``ids`` less the one at ``skip``, without a copy: a per-item pool in O(1) memory."""

    __slots__ = ("_ids", "_skip")

    def __init__(self, ids: Sequence[str], skip: int) -> None:
        self._ids, self._skip = ids, skip

    def __len__(self) -> int:
        return len(self._ids) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        return self._ids[index + (index >= self._skip)]


@dataclass
class GeneratorContext:
    """What a generator may use: the client, named profiles, seeds, personas and the recipe's contract.

    ``splits`` (seed id -> ``train``/``test``) lets a generator keep an item's facts within its seed's
    split; a context built without them treats all seeds as one split."""

    client: ChatClient
    profiles: Mapping[str, ModelProfile]
    seeds: Mapping[str, Seed]
    personas: Sequence[Persona]
    prompts: PromptLibrary
    language: str
    system_prompt: str
    grounding: Literal["closed_book", "in_context"]
    recipe_seed: int
    step: str
    upstream: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    version: str = ""
    splits: Mapping[str, str] = field(default_factory=dict)
    # (topic, split or None) -> seeds in ``seeds`` order, built on first use: one pass over the seeds
    # per context, not one per item (a scan per item made planning quadratic in the seeds)
    _topics: dict[tuple[str, str | None], list[Seed]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _sorted_ids: dict[tuple[str, str | None], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def by_topic(self, topic: str, split: str | None = None) -> list[Seed]:
        """Seeds of ``topic`` (only those ``splits`` puts in ``split``, when given), in ``seeds`` order."""
        return list(self._index().get((topic, split), ()))

    def related(self, seed: Seed, k: int, rng: random.Random) -> list[Seed]:
        """Up to ``k`` other seeds of ``seed``'s topic and split, drawn with ``rng``.

        The draw is ``rng.sample(sorted ids of the others, k)``, consuming ``rng`` exactly as that
        would (datasets and cache keys depend on it), but costs O(k + log n), not O(n), per item."""
        key = (seed.topic, self.splits.get(seed.id))
        ids = self._sorted_ids.get(key)
        if ids is None:
            ids = self._sorted_ids[key] = tuple(sorted(s.id for s in self._index().get(key, ())))
        at = bisect.bisect_left(ids, seed.id)
        pool: Sequence[str] = _Without(ids, at) if at < len(ids) and ids[at] == seed.id else ids
        return [self.seeds[i] for i in rng.sample(pool, min(k, len(pool)))]

    def _index(self) -> dict[tuple[str, str | None], list[Seed]]:
        if self._topics is None:
            self._topics = {}
            for s in self.seeds.values():
                self._topics.setdefault((s.topic, None), []).append(s)
                split = self.splits.get(s.id)
                if split is not None:
                    self._topics.setdefault((s.topic, split), []).append(s)
        return self._topics

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        profile: str,
        schema: type[BaseModel] | None = None,
        sample: int = 0,
        call: str = "",
    ) -> Completion:
        """A call through the run's client; ``ctx.version`` (empty unless the generator sets
        ``cache_version``) is in the cache key, so the same request from two generators is paid once.

        ``call`` names the request's role (``student``, ``assistant``, ...) in failure messages.
        """
        return await self.client.complete(
            [dict(m) for m in messages],
            profile=self.profiles[profile],
            schema=schema,
            sample=sample,
            version=self.version,
            call=call,
        )


class Generator:
    """Subclass and set ``name``, ``version``, ``output``, ``Config``; implement ``generate``."""

    name: ClassVar[str]
    version: ClassVar[str]
    output: ClassVar[OutputName]
    description: ClassVar[str] = ""
    # how the rows are made, for the dataset card's "How it was made" (defaults to ``description``)
    card_method: ClassVar[str] = ""
    # empty: the generator's calls share the response cache with every other caller's, so a request
    # another step already paid for (the preference step re-asking a dialogue's assistant turn) is
    # answered from the cache; set it (and bump it) to keep this generator's answers apart and to get
    # fresh answers for requests that did not change
    cache_version: ClassVar[str] = ""
    # a plugin's own templates live in <prompt_package>/prompts/<language>/<role>.txt (see prompts.py)
    prompt_package: ClassVar[str | None] = None
    # the recipe's folder (set when the recipe resolves the step): ``path_fields`` are resolved against
    # it, and a generator that cites a file it read cites it relative to it, never by an absolute path
    base_dir: Path | None = None

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    def profiles_used(self) -> list[str]:
        """Names of recipe model profiles the config refers to (checked by ``validate``)."""
        return []

    def prompt_roles(self) -> list[str]:
        """Prompt templates this generator renders: checked by ``validate``, hashed into ``run.json``,
        and looked up in ``prompt_package`` first when the generator sets one."""
        return []

    def inputs(self) -> list[Path]:
        """Files this generator reads besides the seeds (documents): their content is part of the
        recipe fingerprint, so an edited file is never resumed into rows made from the old one."""
        return []

    def plan(
        self,
        seeds: Sequence[Seed],
        splits: Mapping[str, str],
        recipe_seed: int,
        step: str,
        upstream: Sequence[Mapping[str, Any]] = (),
    ) -> list[WorkItem]:
        """Work items of this step; the default is one item per seed."""
        return [
            WorkItem(
                id=s.id, seed_ids=(s.id,), split=splits[s.id], rng_seed=item_seed(recipe_seed, step, s.id)
            )
            for s in seeds
        ]

    async def generate(self, item: WorkItem, ctx: GeneratorContext) -> list[dict[str, Any]]:
        raise NotImplementedError
