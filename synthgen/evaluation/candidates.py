"""Answer sources for evaluation: the models whose answers the judge grades.

Three kinds, one interface (``await source.answer(question_id, turns, facts)`` -> the answer text):

* :class:`EndpointSource`: any OpenAI-compatible server (vLLM or TGI hosting the trained model, a
  hosted model), through the same :class:`ChatClient` as generation: limits, retries, cache. With
  ``facts`` it answers like the data generator's teacher (the seed facts in its system turn): an
  upper bound to compare the trained, closed-book model with.
* :class:`LocalSource`: a transformers checkpoint or a PEFT adapter folder (what ``trainer/``
  writes), greedy decoding with the model's chat template. torch and transformers are the optional
  ``train`` extra: imported on first use, with the install hint when missing.
* ``retrieve: {k: 4}`` on an endpoint or local candidate: the retrieval baseline (or a fine-tuned
  model with retrieval): the top ``k`` passages of the train seeds and the regulation documents go
  into its system turn (:mod:`synthgen.evaluation.retrieval`).
* :class:`AnswersSource`: a JSONL of precomputed answers, ``{"question_id": ..., "answer": ...}``
  per line (e.g. produced by another harness); the answer to a scripted follow-up has the id
  ``<question_id>#2``.

Every source gets the recipe's deployment system prompt, as the trained model saw it in training.
An answer that cannot be produced raises :class:`CompletionFailed`; evaluation records it.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthgen.errors import CompletionFailed, ConfigError
from synthgen.evaluation.retrieval import RetrievalTurn, Retriever
from synthgen.llm.client import ChatClient, Message
from synthgen.llm.profile import ModelProfile

__all__ = [
    "VERSION",
    "AnswerSource",
    "AnswersSource",
    "CandidateSpec",
    "EndpointSource",
    "LocalSource",
    "Retrieve",
    "build_sources",
]

VERSION = "evaluate/1"  # goes into the cache key of every evaluation call


class Retrieve(BaseModel):
    """A retrieval candidate's block: how many passages, from which documents (default: the recipe's)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=4, ge=1, le=20, description="passages in the system turn")
    documents: list[Path] | None = Field(
        default=None, description="regulation documents to index instead of the recipe's"
    )


class CandidateSpec(BaseModel):
    """One model to evaluate, as an eval recipe lists it: exactly one of ``endpoint``, ``model``,
    ``answers``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    endpoint: str | ModelProfile | None = Field(default=None, description="a profile name, or a profile")
    facts: bool = Field(default=False, description="the endpoint sees the seed facts, as the teacher did")
    model: Path | None = Field(default=None, description="local transformers checkpoint or PEFT adapter")
    max_new_tokens: int = Field(default=256, gt=0)
    answers: Path | None = Field(default=None, description='JSONL of {"question_id", "answer"}')
    retrieve: Retrieve | None = Field(default=None, description="retrieval baseline: top-k passages")

    @model_validator(mode="after")
    def _one_source(self) -> CandidateSpec:
        given = [k for k in ("endpoint", "model", "answers") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of endpoint, model, answers (got {', '.join(given) or 'none'})"
            )
        if self.facts and self.endpoint is None:
            raise ValueError("facts: only an endpoint candidate can be shown the facts")
        if self.retrieve is not None and (self.answers is not None or self.facts):
            raise ValueError(
                "retrieve: only an endpoint or local candidate without `facts` retrieves "
                "(facts already shows it the gold answer)"
            )
        return self


class AnswerSource(ABC):
    """A candidate model. ``turns`` alternate user/assistant and end with a user turn."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def answer(self, question_id: str, turns: Sequence[Message], facts: str | None) -> str:
        """The candidate's answer to the last user turn; ``facts`` is the question's ``<facts>`` block."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": type(self).__name__}


class EndpointSource(AnswerSource):
    """A model behind an OpenAI-compatible endpoint, optionally shown the facts (``grounded``)."""

    def __init__(
        self,
        name: str,
        *,
        client: ChatClient,
        profile: ModelProfile,
        system_prompt: str,
        grounded: Callable[[str], str] | None = None,
        retrieved: RetrievalTurn | None = None,
    ) -> None:
        """``grounded`` builds the teacher's system turn from a ``<facts>`` block; without it (or
        without facts for a question) the source sees the deployment prompt only. ``retrieved``
        builds it from the conversation instead (retrieval)."""
        super().__init__(name)
        self.client, self.profile = client, profile
        self.system_prompt, self.grounded, self.retrieved = system_prompt, grounded, retrieved

    async def answer(self, question_id: str, turns: Sequence[Message], facts: str | None) -> str:
        system = self.system_prompt
        if self.retrieved is not None:
            system = self.retrieved(turns)
        elif self.grounded is not None and facts:
            system = self.grounded(facts)
        messages = [{"role": "system", "content": system}, *turns]
        completion = await self.client.complete(
            messages, profile=self.profile, version=VERSION, call="candidate"
        )
        return completion.content.strip()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.profile.model,
            "base_url": self.profile.resolved_base_url,
            "grounded": self.grounded is not None,
            **({"retrieve": self.retrieved.describe()} if self.retrieved else {}),
        }


class LocalSource(AnswerSource):
    """A local causal LM or PEFT adapter; generation runs in a worker thread, one question at a time."""

    def __init__(
        self,
        name: str,
        *,
        path: Path,
        system_prompt: str,
        max_new_tokens: int = 256,
        grounded: Callable[[str], str] | None = None,
        retrieved: RetrievalTurn | None = None,
    ) -> None:
        """``grounded``: the published system turn with facts, for models trained ``in_context``;
        ``retrieved``: the system turn from the conversation (retrieval)."""
        super().__init__(name)
        self.path, self.system_prompt, self.max_new_tokens = path, system_prompt, max_new_tokens
        self.grounded, self.retrieved = grounded, retrieved
        self._loaded: tuple[Any, Any] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Any, Any]:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ConfigError(
                f"the local model candidate {self.name!r} needs torch and transformers ({exc.name} missing)",
                field=f"candidates.{self.name}.model",
                hint="pip install 'synthgen[train]', or serve the model (vLLM) and use an endpoint candidate",
            ) from None
        if (self.path / "adapter_config.json").is_file():
            try:
                from peft import AutoPeftModelForCausalLM
            except ImportError:
                raise ConfigError(
                    f"{self.path} is a PEFT adapter and peft is not installed",
                    field=f"candidates.{self.name}.model",
                    hint="pip install 'synthgen[train]'",
                ) from None
            model = AutoPeftModelForCausalLM.from_pretrained(str(self.path))
        else:
            model = AutoModelForCausalLM.from_pretrained(str(self.path))
        tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        model.eval()
        return model, tokenizer

    def _generate(self, messages: list[Message]) -> str:
        import torch

        if self._loaded is None:
            self._loaded = self._load()
        model, tokenizer = self._loaded
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return str(tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    async def answer(self, question_id: str, turns: Sequence[Message], facts: str | None) -> str:
        system = self.grounded(facts) if self.grounded is not None and facts else self.system_prompt
        if self.retrieved is not None:
            system = self.retrieved(turns)
        messages = [{"role": "system", "content": system}, *turns]
        async with self._lock:  # one model, one generation at a time
            return await asyncio.to_thread(self._generate, messages)

    def load(self) -> None:
        """Load now (fail early on a missing extra, before any judge call is paid for)."""
        if self._loaded is None:
            self._loaded = self._load()

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "path": str(self.path), "max_new_tokens": self.max_new_tokens}
        return described | ({"retrieve": self.retrieved.describe()} if self.retrieved else {})


class AnswersSource(AnswerSource):
    """Precomputed answers keyed by question id; a missing id is a recorded failure, not a crash."""

    def __init__(self, name: str, *, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.answers: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key, text = row["question_id"], row["answer"]
            except (json.JSONDecodeError, TypeError, KeyError) as exc:
                raise ConfigError(
                    f"not an answer record ({type(exc).__name__}: {exc})",
                    path=path,
                    line=number,
                    hint='each line is {"question_id": "...", "answer": "..."}',
                ) from None
            if not isinstance(text, str):
                raise ConfigError("answer must be a string", path=path, line=number, field="answer")
            self.answers[str(key)] = text

    async def answer(self, question_id: str, turns: Sequence[Message], facts: str | None) -> str:
        if question_id not in self.answers:
            raise CompletionFailed(
                f"{self.path.name} has no answer for {question_id}", reason="missing_answer"
            )
        return self.answers[question_id].strip()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "answers": len(self.answers)}


def build_sources(
    specs: Sequence[CandidateSpec],
    *,
    client: ChatClient,
    profiles: Mapping[str, ModelProfile],
    system_prompt: str,
    teacher: Callable[[str], str],
    in_context: bool = False,
    retriever: Callable[[Retrieve], Retriever] | None = None,
) -> list[AnswerSource]:
    """One source per spec. ``teacher`` builds the generator's grounded system turn from facts; with
    ``in_context`` (the recipe's grounding) deployed models get the facts after the system prompt, as in
    their training data. ``retriever`` builds the index of a ``retrieve`` candidate, whose passages are
    framed the same way (the teacher's rules, or as trained ``in_context``). Local models are loaded
    here: a missing extra fails before any paid call."""
    published = (lambda facts: f"{system_prompt}\n\n{facts}") if in_context else None
    sources: list[AnswerSource] = []
    for spec in specs:
        retrieved = None
        if spec.retrieve is not None:
            if retriever is None:
                raise ValueError(f"candidate {spec.name!r} retrieves: build_sources needs a retriever")
            retrieved = RetrievalTurn(retriever(spec.retrieve), spec.retrieve.k, published or teacher)
        if spec.endpoint is not None:
            profile = profiles[spec.endpoint] if isinstance(spec.endpoint, str) else spec.endpoint
            grounded = teacher if spec.facts else published
            sources.append(
                EndpointSource(
                    spec.name,
                    client=client,
                    profile=profile,
                    system_prompt=system_prompt,
                    grounded=grounded,
                    retrieved=retrieved,
                )
            )
        elif spec.model is not None:
            local = LocalSource(
                spec.name,
                path=spec.model,
                system_prompt=system_prompt,
                max_new_tokens=spec.max_new_tokens,
                grounded=published,
                retrieved=retrieved,
            )
            local.load()
            sources.append(local)
        else:
            assert spec.answers is not None
            sources.append(AnswersSource(spec.name, path=spec.answers))
    return sources
