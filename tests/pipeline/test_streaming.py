"""A run's rows stream to disk instead of piling up in memory (issue 13 item 4).

Why: every step's rows were one list held until finalize, resume and collect loaded every journal
entry (rows included) at once, and finalize built each parquet file from a list of every row, so a
run's peak memory grew with its dataset (``benchmarks/pipeline.py`` measures it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from synthgen import load_recipe, run
from synthgen.pipeline import finalize
from synthgen.pipeline.journal import Journal
from synthgen.pipeline.spool import RowSpool, RowSpoolWriter
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


def test_parquet_is_written_in_batches_under_one_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 2 rows: a field null in the first batch and text in a later one, and an int score
    beside a float one, land in one file with one schema, as a list of every row did."""
    monkeypatch.setattr(finalize, "BATCH_ROWS", 2)
    rows = [
        {"id": "a", "note": None, "score": 7, "messages": [{"role": "user", "content": "hola"}]},
        {"id": "b", "note": None, "score": 8, "messages": [{"role": "user", "content": "adiós"}]},
        {"id": "c", "note": "texto", "score": 6.5, "messages": []},
        {"id": "d", "note": "más", "score": 9, "messages": [{"role": "assistant", "content": "sí"}]},
        {"id": "e", "note": None, "score": 1.0, "messages": []},
    ]
    path = tmp_path / "data" / "train.parquet"
    assert finalize._to_parquet(lambda: iter(rows), path) == 5
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert loaded.features["score"].dtype == "float64"
    assert [r["note"] for r in loaded] == [None, None, "texto", "más", None]
    assert [r["score"] for r in loaded] == [7.0, 8.0, 6.5, 9.0, 1.0]
    assert loaded[0]["messages"] == [{"role": "user", "content": "hola"}]
    assert finalize._to_parquet(lambda: iter([]), tmp_path / "empty.parquet") == 0
    assert not (tmp_path / "empty.parquet").exists()


def test_journal_index_reads_the_last_entry_of_each_item(tmp_path: Path) -> None:
    path = tmp_path / "step.jsonl"
    journal = Journal(path)
    journal.append({"item": "x", "status": "failed", "reason": "timeout", "detail": ""})
    journal.append({"item": "y", "status": "ok", "rows": [{"n": 1}]})
    journal.append({"item": "x", "status": "ok", "rows": [{"n": 2}]})
    journal.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"item": "z", "status": "ok"')  # torn by a kill
    index = journal.index()
    assert sorted(index) == ["x", "y"]
    assert index["x"][1:] == ("ok", "")
    assert journal.read(index["x"][0])["rows"] == [{"n": 2}]
    assert journal.read(index["y"][0])["rows"] == [{"n": 1}]


def test_a_spool_reads_rows_back_in_order(tmp_path: Path) -> None:
    writer = RowSpoolWriter(tmp_path / "rows" / "step.jsonl")
    for i in range(5):
        writer.write({"i": i, "text": f"fila {i} ñ"})
    spool = writer.close()
    assert len(spool) == 5 and [r["i"] for r in spool] == list(range(5))
    assert spool[3] == {"i": 3, "text": "fila 3 ñ"} and [r["i"] for r in spool[1:3]] == [1, 2]


def test_a_run_never_loads_a_whole_journal_and_hands_finalize_spools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resume and collect read the journal by its index; the steps' rows reach finalize as spools
    read from disk, and the spools are gone once the dataset is written."""

    def whole_journal(self: Journal) -> Any:
        raise AssertionError("a whole journal was loaded into memory")

    monkeypatch.setattr(Journal, "load", whole_journal)
    seen: dict[str, list[Any]] = {}
    real_write = finalize.write_run_dir

    def spy(out: Path, recipe: Any, result: Any, outputs: Any, *rest: Any, **named: Any) -> None:
        seen.update(outputs)
        real_write(out, recipe, result, outputs, *rest, **named)

    monkeypatch.setattr("synthgen.pipeline.runner.write_run_dir", spy)
    out = tmp_path / "run"
    result = run(load_recipe(DEMO), out=out, offline=True, limit=4)
    assert seen and all(isinstance(source, RowSpool) for sources in seen.values() for source in sources)
    assert not (out / ".synthgen" / "rows").exists()
    sft = datasets.load_dataset(str(out), "sft")
    assert sum(len(split) for split in sft.values()) == result.steps["dialogues"].rows > 0
    again = run(load_recipe(DEMO), out=out, offline=True, limit=4)  # a resume: nothing left to do
    assert again.steps["dialogues"].rows == result.steps["dialogues"].rows
    assert json.loads((out / "run.json").read_text())["steps"]["prefs"]["rows"] == result.steps["prefs"].rows
