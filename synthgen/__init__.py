"""synthgen: turn a handful of expert Q&A pairs into a domain assistant.

The public API; everything else is internal. ``__all__`` is sorted and guarded by tests, as is the
rule that no public name is also a submodule (``import synthgen.X`` would rebind it). Names are
imported on first use, so ``synthgen --help`` and ``import synthgen.errors`` do not pay for pandas,
pyarrow and the SDK.

The package reads as its architecture: shared vocabulary at the top (recipe, seeds, records,
grounding, prompts, rundir, errors, paths, determinism) and one folder per stage of the flow:
``llm`` -> ``generators`` (and ``judge``, ``quality``) -> ``pipeline`` -> ``card``, ``reports``,
``hub``, ``evaluation``; ``cli`` on top. The import-linter contracts in ``pyproject.toml`` hold it so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from synthgen._version import __version__

_EXPORTS = {
    "AuthenticationFailed": "errors",
    "BudgetExceeded": "errors",
    "Candidate": "records",
    "ChatClient": "llm.client",
    "ChatMessage": "records",
    "Completion": "llm.answer",
    "CompletionFailed": "errors",
    "ConfigError": "errors",
    "CostEstimate": "pipeline.estimate",
    "DialogueRow": "records",
    "EvalRecipe": "evaluation.recipe",
    "EvalResult": "evaluation.evaluator",
    "Generator": "generators.base",
    "GeneratorContext": "generators.base",
    "GeneratorNotFound": "errors",
    "Limits": "llm.limits",
    "ModelProfile": "llm.profile",
    "Persona": "seeds",
    "PersonalDataFound": "errors",
    "PreferenceRow": "records",
    "Prices": "llm.profile",
    "PromptLibrary": "prompts.library",
    "PromptTemplate": "prompts.library",
    "ProviderError": "errors",
    "PublishError": "errors",
    "PublishFailed": "errors",
    "PublishResult": "hub.publish",
    "Recipe": "recipe",
    "RecipeError": "errors",
    "Rejected": "generators.base",
    "ResponseCache": "llm.cache",
    "ResumeError": "errors",
    "RunDirLocked": "errors",
    "RunFailed": "errors",
    "RunResult": "pipeline.result",
    "RunStatus": "pipeline.status",
    "Seed": "seeds",
    "SeedError": "errors",
    "ServerReport": "pipeline.doctor",
    "StepCounts": "pipeline.result",
    "SynthgenError": "errors",
    "TokenUsage": "llm.usage",
    "TrainerError": "errors",
    "UsageMeter": "llm.usage",
    "WorkItem": "generators.base",
    "available_generators": "generators.registry",
    "doctor": "pipeline.doctor",
    "estimate": "pipeline.estimate",
    "evaluate": "evaluation.evaluator",
    "get_generator": "generators.registry",
    "item_seed": "determinism",
    "load_eval_recipe": "evaluation.recipe",
    "load_personas": "seeds",
    "load_recipe": "recipe",
    "load_seeds": "seeds",
    "prompt_id": "records",
    "publish": "hub.publish",
    "refresh_generators": "generators.registry",
    "report": "reports.terminal",
    "run": "pipeline.runner",
    "run_status": "pipeline.status",
    "scaffold": "pipeline.scaffold",
    "validate_recipe": "pipeline.validate",
}

if TYPE_CHECKING:
    from synthgen.determinism import item_seed
    from synthgen.errors import (
        AuthenticationFailed,
        BudgetExceeded,
        CompletionFailed,
        ConfigError,
        GeneratorNotFound,
        PersonalDataFound,
        ProviderError,
        PublishError,
        PublishFailed,
        RecipeError,
        ResumeError,
        RunDirLocked,
        RunFailed,
        SeedError,
        SynthgenError,
        TrainerError,
    )
    from synthgen.evaluation.evaluator import EvalResult, evaluate
    from synthgen.evaluation.recipe import EvalRecipe, load_eval_recipe
    from synthgen.generators.base import Generator, GeneratorContext, Rejected, WorkItem
    from synthgen.generators.registry import available_generators, get_generator, refresh_generators
    from synthgen.hub.publish import PublishResult, publish
    from synthgen.llm.answer import Completion
    from synthgen.llm.cache import ResponseCache
    from synthgen.llm.client import ChatClient
    from synthgen.llm.limits import Limits
    from synthgen.llm.profile import ModelProfile, Prices
    from synthgen.llm.usage import TokenUsage, UsageMeter
    from synthgen.pipeline.doctor import ServerReport, doctor
    from synthgen.pipeline.estimate import CostEstimate, estimate
    from synthgen.pipeline.result import RunResult, StepCounts
    from synthgen.pipeline.runner import run
    from synthgen.pipeline.scaffold import scaffold
    from synthgen.pipeline.status import RunStatus, run_status
    from synthgen.pipeline.validate import validate_recipe
    from synthgen.prompts.library import PromptLibrary, PromptTemplate
    from synthgen.recipe import Recipe, load_recipe
    from synthgen.records import Candidate, ChatMessage, DialogueRow, PreferenceRow, prompt_id
    from synthgen.reports.terminal import report
    from synthgen.seeds import Persona, Seed, load_personas, load_seeds

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "Candidate",
    "ChatClient",
    "ChatMessage",
    "Completion",
    "CompletionFailed",
    "ConfigError",
    "CostEstimate",
    "DialogueRow",
    "EvalRecipe",
    "EvalResult",
    "Generator",
    "GeneratorContext",
    "GeneratorNotFound",
    "Limits",
    "ModelProfile",
    "Persona",
    "PersonalDataFound",
    "PreferenceRow",
    "Prices",
    "PromptLibrary",
    "PromptTemplate",
    "ProviderError",
    "PublishError",
    "PublishFailed",
    "PublishResult",
    "Recipe",
    "RecipeError",
    "Rejected",
    "ResponseCache",
    "ResumeError",
    "RunDirLocked",
    "RunFailed",
    "RunResult",
    "RunStatus",
    "Seed",
    "SeedError",
    "ServerReport",
    "StepCounts",
    "SynthgenError",
    "TokenUsage",
    "TrainerError",
    "UsageMeter",
    "WorkItem",
    "__version__",
    "available_generators",
    "doctor",
    "estimate",
    "evaluate",
    "get_generator",
    "item_seed",
    "load_eval_recipe",
    "load_personas",
    "load_recipe",
    "load_seeds",
    "prompt_id",
    "publish",
    "refresh_generators",
    "report",
    "run",
    "run_status",
    "scaffold",
    "validate_recipe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synthgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"synthgen.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
