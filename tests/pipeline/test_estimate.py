"""The estimate simulates a sample of each step's items and is kept by recipe fingerprint (issue 13 item 3).

Why: ``synthgen run`` simulated every item offline before its first request (27 s for the faculty
recipe, more than 4 s for ``--limit 6``), and ``estimate`` did the same work on every call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthgen import load_recipe
from synthgen.cli import main
from synthgen.llm.profile import Prices
from synthgen.pipeline.estimate import estimate
from synthgen.recipe import Recipe
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


def demo(seeds: int) -> Recipe:
    recipe = load_recipe(DEMO)
    recipe.loaded_seeds = recipe.loaded_seeds[:seeds]
    return recipe


def test_a_sampled_estimate_is_within_its_stated_error_of_simulating_every_item() -> None:
    """60 seeds, 120 dialogues: 24 of each step's items simulated, the rest scaled, agree with the
    simulation of all 120 + 120 items within the error the sampled estimate states (95%)."""
    recipe = demo(60)
    full = estimate(recipe, sample=None, use_cache=False)
    sampled = estimate(recipe, sample=24, use_cache=False)
    assert full.error == 0 and all(s.sampled == s.items for s in full.steps.values())
    assert sampled.steps["dialogues"].sampled == 24 and sampled.steps["dialogues"].items == 120
    assert 0 < sampled.error < 0.2
    assert abs(sampled.usd - full.usd) <= sampled.error * full.usd, (sampled.usd, full.usd, sampled.error)
    for name, step in full.steps.items():
        guess = sampled.steps[name]
        assert abs(guess.items - step.items) <= 0.1 * step.items  # the prefs count is scaled too
        assert abs(guess.calls - step.calls) <= max(guess.error, 0.05) * 1.5 * step.calls, name


def test_the_preference_steps_reuse_of_dialogue_answers_is_counted_as_free() -> None:
    """The grounded first candidate is the dialogue's assistant request: one cache hit per preference
    item, not in the bill (the run does not pay for it either)."""
    result = estimate(demo(12), sample=None, use_cache=False)
    prefs = result.steps["prefs"]
    assert prefs.cached_calls == prefs.items > 0
    assert result.steps["dialogues"].cached_calls == 0
    per_item = 4 + 4  # candidates + judge calls
    assert prefs.calls == (per_item - 1) * prefs.items


def test_the_estimate_is_reused_until_the_recipe_or_a_price_changes() -> None:
    recipe = demo(12)
    first = estimate(recipe)
    assert not first.cached
    again = estimate(recipe)
    assert again.cached and again.to_json() | {"cached": False} == first.to_json()
    assert list((Path(os.environ["SYNTHGEN_HOME"]) / "estimates").glob("*.json"))

    assert not estimate(demo(11)).cached  # a seed less: another fingerprint
    repriced = demo(12)
    repriced.models["assistant"] = repriced.models["assistant"].model_copy(
        update={"prices": Prices(input=1.0, output=2.0)}
    )
    fresh = estimate(repriced)
    assert not fresh.cached and fresh.usd != first.usd
    assert not estimate(recipe, use_cache=False).cached


def test_estimate_cli_states_the_sample_error_and_reuse(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("../../seeds/", str(REPO / "seeds") + "/")
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(text, encoding="utf-8")
    first = CliRunner().invoke(main, ["estimate", str(recipe), "--sample", "8"])
    assert first.exit_code == 0, first.output
    assert "(8 simulated)" in first.output and "sampling error" in first.output
    assert "answered by the cache" in first.output and "reused" not in first.output
    again = CliRunner().invoke(main, ["estimate", str(recipe), "--sample", "8", "--json"])
    payload: dict[str, Any] = json.loads(again.stdout)
    assert payload["cached"] and payload["error"] > 0
    every = CliRunner().invoke(main, ["estimate", str(recipe), "--sample", "0", "--json"])
    assert json.loads(every.stdout)["error"] == 0


def test_a_sample_of_zero_items_is_refused() -> None:
    with pytest.raises(ValueError, match="sample"):
        estimate(demo(4), sample=0)
