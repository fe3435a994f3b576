"""The public surface and the small accounting pieces everything else relies on."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import warnings
from pathlib import Path
from types import ModuleType

import pytest

import synthgen
from synthgen.llm.profile import ModelProfile, Prices
from synthgen.llm.usage import TokenUsage, UsageMeter, cost_usd, count_tokens, price_for
from tests.conftest import REPO


def test_all_is_sorted_and_complete() -> None:
    assert synthgen.__all__ == sorted(synthgen.__all__)
    for name in synthgen.__all__:
        assert getattr(synthgen, name) is not None, name
    with pytest.raises(AttributeError):
        _ = synthgen.not_a_name  # type: ignore[attr-defined]


def test_all_and_the_lazy_export_table_agree() -> None:
    assert set(synthgen.__all__) == set(synthgen._EXPORTS) | {"__version__"}
    assert synthgen.__dir__() == sorted(synthgen.__all__)


def test_no_public_name_is_also_a_submodule() -> None:
    """``import synthgen.X`` would bind the module over the public ``synthgen.X``."""
    clashes = [name for name in synthgen.__all__ if importlib.util.find_spec(f"synthgen.{name}") is not None]
    assert clashes == []


def test_public_names_stay_themselves_after_every_submodule_is_imported() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the deprecated plugin shims
        for module in pkgutil.walk_packages(synthgen.__path__, "synthgen."):
            importlib.import_module(module.name)
    for name in synthgen.__all__:
        value = getattr(synthgen, name)
        assert not isinstance(value, ModuleType), f"synthgen.{name} is the module {value.__name__}"
    from synthgen import evaluate

    assert callable(evaluate) and not isinstance(evaluate, ModuleType)


def test_prices_match_dated_snapshots_by_longest_prefix() -> None:
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert price_for("gpt-4o-mini-2024-07-18") == Prices(input=0.15, output=0.60, cached_input=0.075)
    assert price_for("my-local-llama") is None
    override = Prices(input=1, output=2)
    assert price_for("gpt-4o", override) is override


def test_cost_counts_cached_prompt_tokens_at_their_price() -> None:
    usage = TokenUsage(
        requests=1, prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=400_000
    )
    prices = Prices(input=2.5, output=10, cached_input=1.25)
    assert cost_usd(usage, prices) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 10)


def test_meter_tracks_budget_and_unpriced_models() -> None:
    meter = UsageMeter(max_usd=0.01)
    meter.record(
        "gpt-4o-2024-08-06",
        TokenUsage(requests=1, prompt_tokens=2000, completion_tokens=500),
        price_for("gpt-4o"),
    )
    assert meter.spent_usd == pytest.approx((2000 * 2.5 + 500 * 10) / 1e6)
    assert meter.over_budget
    meter.record("local", TokenUsage(requests=1, prompt_tokens=10), None)
    assert meter.snapshot()["unpriced_models"] == ["local"]


def test_token_counts_work_offline_and_are_close_to_o200k() -> None:
    text = "¿Cuándo es el plazo de matrícula ordinaria para estudiantes de continuación en la Facultad?"
    n = count_tokens(text)
    assert 14 <= n <= 26  # o200k_base: 19
    assert count_tokens("") == 0
    assert synthgen.llm.usage.TOKEN_COUNTER  # says which counter is in use


def test_profile_reads_the_key_at_call_time_and_never_stores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = ModelProfile(name="a", model="gpt-4o", api_key_env="MY_KEY")
    monkeypatch.setenv("MY_KEY", "sk-secret")
    assert profile.api_key() == "sk-secret"
    assert "sk-secret" not in profile.model_dump_json()
    assert profile.limit_key() == ("https://api.openai.com/v1", "gpt-4o", "MY_KEY")


def test_first_release_plugin_paths_still_work_with_a_deprecation_warning() -> None:
    """``synthgen.generator.item_seed`` and ``synthgen.registry.refresh()`` were documented for plugins:
    they keep working for one minor release, each use saying where the name lives now."""
    with pytest.warns(DeprecationWarning, match="from synthgen import item_seed"):
        from synthgen.generator import item_seed
    assert item_seed is synthgen.item_seed
    with pytest.warns(DeprecationWarning, match="from synthgen import Generator"):
        from synthgen.generator import Generator
    assert Generator is synthgen.Generator
    from synthgen import registry

    with pytest.warns(DeprecationWarning, match="refresh_generators"):
        registry.refresh()
    assert "dialogue" in synthgen.available_generators()
    with pytest.raises(ImportError):
        from synthgen.generator import not_a_name  # noqa: F401


def test_verbs_take_a_recipe_object_or_a_path(tmp_path: Path) -> None:
    recipe_path = REPO / "recipes" / "offline-demo" / "recipe.yaml"
    recipe = synthgen.load_recipe(recipe_path)
    assert synthgen.validate_recipe(recipe_path).splitlines()[0] == f"ok: {recipe_path}"
    assert (
        synthgen.validate_recipe(recipe).splitlines()[1:]
        == synthgen.validate_recipe(recipe_path).splitlines()[1:]
    )
    by_path = synthgen.estimate(recipe_path, offline=True)
    by_object = synthgen.estimate(recipe, offline=True)
    assert by_object.cached  # the same recipe either way: the estimate kept for the path is reused
    assert by_path.to_json() | {"cached": True} == by_object.to_json() and by_path.usd > 0
