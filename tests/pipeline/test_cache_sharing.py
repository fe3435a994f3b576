"""The same request is paid once, whichever generator sends it (issue 13 item 5).

Why: the preference step's first candidate (the assistant profile, grounded, sample 0) is exactly the
request the dialogue step sent for that user turn, but the cache key held the caller's version
(``dialogue/1`` vs ``preference/1``), so a first run paid for it twice: 6.7% of the faculty recipe's
requests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthgen import load_recipe, run
from synthgen.generators.preference import PreferenceGenerator
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


def journal(out: Path, step: str) -> list[dict[str, Any]]:
    lines = (out / ".synthgen" / "journal" / f"{step}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def hits(out: Path, step: str) -> list[int]:
    return [e["usage"]["cache_hits"] for e in journal(out, step)]


def test_the_preference_step_reuses_the_dialogues_paid_assistant_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each preference item's first candidate is a cache hit of its dialogue's assistant turn: one hit
    more per item than the same run with the generators' answers kept apart (``cache_version``, the
    way kept to invalidate: bumping it re-asks unchanged requests). Other hits are identical judge
    requests within an item (two candidates the offline provider answered alike)."""
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "apart"))
    with monkeypatch.context() as patch:
        patch.setattr(PreferenceGenerator, "cache_version", "2")
        run(load_recipe(DEMO), out=tmp_path / "apart", offline=True, limit=6)
    monkeypatch.setenv("SYNTHGEN_HOME", str(tmp_path / "shared"))
    result = run(load_recipe(DEMO), out=tmp_path / "shared", offline=True, limit=6)
    assert hits(tmp_path / "shared", "dialogues") == hits(tmp_path / "apart", "dialogues") == [0] * 6
    apart, shared = hits(tmp_path / "apart", "prefs"), hits(tmp_path / "shared", "prefs")
    assert len(shared) == 6
    assert [s - a for s, a in zip(shared, apart, strict=True)] == [1] * 6
    assert result.usage["cache_hits"] == sum(shared)
    # the reused answer is the dialogue's: the first candidate of each pair is the assistant's turn
    turns = {
        m["content"] for e in journal(tmp_path / "shared", "dialogues") for m in e["rows"][0]["messages"]
    }
    pairs = [e["rows"][0] for e in journal(tmp_path / "shared", "prefs") if e["status"] == "ok"]
    assert pairs and all(pair["candidates"][0]["content"] in turns for pair in pairs)
