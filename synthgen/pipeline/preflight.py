"""What is checked before an online run spends anything, in this order: every key a step needs is in
the environment, every model has a price when there is a budget, the endpoints a recipe names
itself are said aloud, ``structured_output: auto`` profiles learn what their server does (the
cached probe, see :mod:`synthgen.pipeline.doctor`), and the estimate is held against the budget (the gate).
"""

from __future__ import annotations

from collections.abc import Callable

from synthgen.errors import BudgetExceeded, RecipeError
from synthgen.llm.usage import price_for
from synthgen.pipeline.doctor import resolve_auto
from synthgen.pipeline.estimate import gate_estimate
from synthgen.recipe import Recipe

__all__ = ["endpoints", "preflight", "profiles_used"]


def preflight(
    recipe: Recipe, *, confirm: Callable[[str], bool] | None, notify: Callable[[str], None]
) -> None:
    """Raise before the first paid call if the run cannot or should not start; say where it sends."""
    _check_keys(recipe)
    _check_prices(recipe)
    for line in endpoints(recipe):
        notify(line)
    resolve_auto(recipe, profiles_used(recipe), notify)
    if confirm is not None:
        _budget_gate(recipe, confirm)


def endpoints(recipe: Recipe) -> list[str]:
    """Where a recipe sends its prompts when it names endpoints itself (a shared recipe could point
    them anywhere): said before the first paid call. Profiles on the SDK's default say nothing."""
    by_url: dict[str, list[str]] = {}
    for name, profile in recipe.models.items():
        if profile.base_url is not None:
            by_url.setdefault(profile.resolved_base_url, []).append(f"models.{name}")
    return [
        f"requests of {', '.join(names)} go to {url} (the recipe's base_url)" for url, names in by_url.items()
    ]


def profiles_used(recipe: Recipe) -> list[str]:
    """Profile names in the order the steps first call them (the student before the assistant)."""
    used = [name for step in recipe.steps for name in recipe.generator(step).profiles_used()]
    if recipe.quality.verify_claims:
        used.append(recipe.quality.verify_claims)
    return list(dict.fromkeys(used))


def _check_keys(recipe: Recipe) -> None:
    """Every profile a step calls has its key in the environment: said before any prompt or request."""
    for name in profiles_used(recipe):
        recipe.models[name].api_key()


def _check_prices(recipe: Recipe) -> None:
    """A budget needs a price for every model a step calls: an unpriced one would spend unseen."""
    if recipe.budget.max_usd is None:
        return
    for name in profiles_used(recipe):
        profile = recipe.models[name]
        if price_for(profile.model, profile.prices) is None:
            raise RecipeError(
                f"no known price for model {profile.model!r}, so budget.max_usd cannot be enforced",
                path=recipe.path,
                field=f"models.{name}.prices",
                hint="set prices: {input: USD, output: USD} per million tokens (prices: {input: 0, "
                "output: 0} for a local server), or remove budget.max_usd",
            )


def _budget_gate(recipe: Recipe, confirm: Callable[[str], bool]) -> None:
    """Before spending: when the estimate passes ``budget.max_usd``, ask ``confirm`` whether to go on."""
    budget = recipe.budget.max_usd
    if budget is None:
        return
    planned = gate_estimate(recipe)  # kept by `synthgen estimate`, else a quick sample: ~0.3 s
    error = f" (±{planned.error:.0%})" if planned.error else ""
    if planned.usd > budget and not confirm(
        f"estimated ${planned.usd:.2f}{error} exceeds budget.max_usd ${budget:.2f}; "
        "generation stops at the budget. Continue?"
    ):
        raise BudgetExceeded(
            f"estimated ${planned.usd:.2f}{error} exceeds budget.max_usd ${budget:.2f}; not started",
            path=recipe.path,
            field="budget.max_usd",
            hint="raise budget.max_usd, lower per_seed or candidates, or run with --yes to stop at the budget",
        )
