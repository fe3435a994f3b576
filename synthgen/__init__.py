"""synthgen: turn a handful of expert Q&A pairs into a domain assistant.

The public API; everything else is internal. ``__all__`` is sorted and guarded by a test. Names are
imported on first use, so ``synthgen --help`` and ``import synthgen.errors`` do not pay for pandas,
pyarrow and the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuthenticationFailed": "errors",
    "BudgetExceeded": "errors",
    "Candidate": "records",
    "ChatClient": "client",
    "ChatMessage": "records",
    "Completion": "client",
    "CompletionFailed": "errors",
    "ConfigError": "errors",
    "DialogueRow": "records",
    "EvalRecipe": "evaluator",
    "EvalResult": "evaluator",
    "Generator": "generator",
    "GeneratorContext": "generator",
    "GeneratorNotFound": "errors",
    "Limits": "limits",
    "ModelProfile": "profile",
    "Persona": "seeds",
    "PersonalDataFound": "errors",
    "PreferenceRow": "records",
    "PublishResult": "hub",
    "Prices": "profile",
    "ProviderError": "errors",
    "PublishError": "errors",
    "PublishFailed": "errors",
    "Recipe": "recipe",
    "RecipeError": "errors",
    "Rejected": "generator",
    "ResponseCache": "cache",
    "ResumeError": "errors",
    "RunResult": "runner",
    "Seed": "seeds",
    "SeedError": "errors",
    "SynthgenError": "errors",
    "TokenUsage": "usage",
    "TrainerError": "errors",
    "UsageMeter": "usage",
    "WorkItem": "generator",
    "available_generators": "registry",
    "evaluate": "evaluator",
    "get_generator": "registry",
    "item_seed": "generator",
    "load_eval_recipe": "evaluator",
    "load_personas": "seeds",
    "load_recipe": "recipe",
    "load_seeds": "seeds",
    "prompt_id": "records",
    "publish": "hub",
    "run": "runner",
}

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .client import ChatClient, Completion
    from .errors import (
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
        SeedError,
        SynthgenError,
        TrainerError,
    )
    from .evaluator import EvalRecipe, EvalResult, evaluate, load_eval_recipe
    from .generator import Generator, GeneratorContext, Rejected, WorkItem, item_seed
    from .hub import PublishResult, publish
    from .limits import Limits
    from .profile import ModelProfile, Prices
    from .recipe import Recipe, load_recipe
    from .records import Candidate, ChatMessage, DialogueRow, PreferenceRow, prompt_id
    from .registry import available_generators, get_generator
    from .runner import RunResult, run
    from .seeds import Persona, Seed, load_personas, load_seeds
    from .usage import TokenUsage, UsageMeter

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "Candidate",
    "ChatClient",
    "ChatMessage",
    "Completion",
    "CompletionFailed",
    "ConfigError",
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
    "ProviderError",
    "PublishError",
    "PublishFailed",
    "PublishResult",
    "Recipe",
    "RecipeError",
    "Rejected",
    "ResponseCache",
    "ResumeError",
    "RunResult",
    "Seed",
    "SeedError",
    "SynthgenError",
    "TokenUsage",
    "TrainerError",
    "UsageMeter",
    "WorkItem",
    "__version__",
    "available_generators",
    "evaluate",
    "get_generator",
    "item_seed",
    "load_eval_recipe",
    "load_personas",
    "load_recipe",
    "load_seeds",
    "prompt_id",
    "publish",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synthgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
