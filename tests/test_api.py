"""The public surface and the small accounting pieces everything else relies on."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import warnings
from types import ModuleType

import pytest

import synthgen
from synthgen.llm.profile import ModelProfile, Prices
from synthgen.llm.usage import TokenUsage, UsageMeter, cost_usd, count_tokens, price_for


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
