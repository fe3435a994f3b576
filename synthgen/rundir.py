"""The RUN_DIR layout (a dataset folder in Hub layout) and its atomic finalize.

``datasets.load_dataset(RUN_DIR, "sft")`` works as is: the card's YAML header declares the configs
``sft``, ``prefs`` and ``seeds`` with their parquet files. Everything is written into a temporary
folder first and moved into place at the end, so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recipe import Recipe
    from .runner import RunResult

__all__ = ["CONFIGS", "data_files", "write_run_dir"]

CONFIGS = ("sft", "prefs", "seeds")
SPLITS = ("train", "test")


def data_files(run_dir: Path) -> dict[str, dict[str, str]]:
    """config -> split -> glob, for the configs and splits that have files."""
    found: dict[str, dict[str, str]] = {}
    for config in CONFIGS:
        for split in SPLITS:
            if list((run_dir / "data" / config).glob(f"{split}-*.parquet")):
                found.setdefault(config, {})[split] = f"data/{config}/{split}-*.parquet"
    return found


def _to_parquet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_list([dict(r) for r in rows]).to_parquet(str(path))


def write_run_dir(
    out: Path,
    recipe: Recipe,
    result: RunResult,
    outputs: Mapping[str, list[dict[str, Any]]],
    splits: Mapping[str, str],
    reports: Mapping[str, list[dict[str, Any]]],
) -> None:
    """Write data/, README.md and run.json atomically; reports go under .synthgen/."""
    from .card import render_card

    tmp = out / ".synthgen" / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    for config in ("sft", "prefs"):
        rows = outputs.get(config, [])
        for split in SPLITS:
            chosen = [{k: v for k, v in r.items() if k != "__split"} for r in rows if r["__split"] == split]
            if chosen:
                (tmp / "data" / config).mkdir(parents=True, exist_ok=True)
                _to_parquet(chosen, tmp / "data" / config / f"{split}-00000-of-00001.parquet")
    seed_rows = [{**s.model_dump(mode="json"), "split": splits[s.id]} for s in recipe.loaded_seeds]
    for row in seed_rows:
        row["tags"] = list(row["tags"])
        row["source"] = row["source"] or {"document": "", "article": None}
    (tmp / "data" / "seeds").mkdir(parents=True)
    _to_parquet(seed_rows, tmp / "data" / "seeds" / "train-00000-of-00001.parquet")
    generated = outputs.get("seeds", [])
    if generated:
        (tmp / "generated").mkdir()
        with (tmp / "generated" / "seeds.jsonl").open("w", encoding="utf-8") as f:
            for row in generated:
                f.write(
                    json.dumps({k: v for k, v in row.items() if k != "__split"}, ensure_ascii=False) + "\n"
                )
    (tmp / "run.json").write_text(
        json.dumps(result.to_json(), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (tmp / "README.md").write_text(render_card(tmp, recipe, result.to_json()), encoding="utf-8")
    for kind, records in reports.items():
        with (out / ".synthgen" / f"{kind if kind != 'failed' else 'failures'}.jsonl").open("w") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    # swap into place: the old dataset stays whole until the new one is complete
    trash = out / ".synthgen" / "trash"
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    for name in ("data", "generated", "run.json", "README.md"):
        target = out / name
        if target.exists():
            os.replace(target, trash / name)
        if (tmp / name).exists():
            os.replace(tmp / name, target)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
