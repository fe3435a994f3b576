"""Finalize: write the dataset (data, card, run.json) into a RUN_DIR all at once.

Everything is written into ``.synthgen/tmp`` first and swapped into place at the end, so a crash never
leaves a half-written dataset, and the old dataset stays whole until the new one is complete. Rows
land in the config of their output kind; seeds are published as the ``seeds`` config (provenance)
and seeds a step generated from documents as ``generated/seeds.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthgen.card import render_card
from synthgen.pipeline.result import RunResult
from synthgen.recipe import Recipe
from synthgen.records import OUTPUT_KINDS
from synthgen.reviews import write_unreviewed
from synthgen.rundir import PUBLISHED, SPLITS, RunDir, file_sha256

__all__ = ["recover", "write_reports", "write_run_dir"]


def _to_parquet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list([dict(r) for r in rows]).to_parquet(str(path))


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "__split"}


def write_reports(out: Path, reports: Mapping[str, list[dict[str, Any]]]) -> None:
    """``.synthgen/failures.jsonl`` and ``rejected.jsonl``: one record per dropped item or row, with why."""
    for report, records in reports.items():
        path = RunDir(out).report(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_run_dir(
    out: Path,
    recipe: Recipe,
    result: RunResult,
    outputs: Mapping[str, list[dict[str, Any]]],
    splits: Mapping[str, str],
    reports: Mapping[str, list[dict[str, Any]]],
    *,
    unreviewed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> None:
    """Write data/, README.md and run.json atomically; ``reports`` (failed, rejected) go under .synthgen/,
    and so do the ``unreviewed`` rows (before people's decisions were applied), when given."""
    final = RunDir(out)
    shutil.rmtree(final.tmp, ignore_errors=True)
    staged = RunDir(final.tmp)
    staged.path.mkdir(parents=True)
    for kind in OUTPUT_KINDS.values():
        rows = outputs.get(kind.name, [])
        for split in () if kind.generated else SPLITS:
            chosen = [_public(r) for r in rows if r["__split"] == split]
            if chosen:
                _to_parquet(chosen, staged.data_file(kind.name, split))
    seed_rows = [{**s.model_dump(mode="json"), "split": splits[s.id]} for s in recipe.loaded_seeds]
    for row in seed_rows:
        row["tags"] = list(row["tags"])
        row["source"] = row["source"] or {"document": "", "article": None}
    _to_parquet(seed_rows, staged.data_file("seeds", "train"))
    for kind in OUTPUT_KINDS.values():
        generated = outputs.get(kind.name, []) if kind.generated else []
        if generated:
            path = staged.generated(kind.name)
            path.parent.mkdir(exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                for row in generated:
                    f.write(json.dumps(_public(row), ensure_ascii=False) + "\n")
    staged.card.write_text(render_card(staged.path, recipe, result.to_json()), encoding="utf-8")
    # run.json last: it lists the sha256 of every other published file, so a reader (publish) can
    # tell a complete dataset from a mix of two
    result.files = {f: file_sha256(staged.path / f) for f in staged.published_names()}
    staged.run_json.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    write_reports(out, reports)
    if unreviewed is not None:
        write_unreviewed(final.unreviewed, unreviewed)
    staged_names = [name for name in PUBLISHED if (staged.path / name).exists()]
    final.swap_marker.write_text(
        json.dumps({"staged": staged_names, "started": time.time()}), encoding="utf-8"
    )
    _swap(final)


def _swap(final: RunDir) -> None:
    """Move the staged dataset into place, as the swap marker lists it. The old dataset stays whole
    until the new one is complete, and the marker (written once staging is complete) lets
    :func:`recover` finish a swap a kill interrupted: it rolls forward, since every new file is staged."""
    staged = json.loads(final.swap_marker.read_text(encoding="utf-8"))["staged"]
    shutil.rmtree(final.trash, ignore_errors=True)
    final.trash.mkdir()
    for name in PUBLISHED:
        target, new = final.path / name, final.tmp / name
        if name in staged and not new.exists():
            continue  # moved in before the interruption
        if target.exists():
            os.replace(target, final.trash / name)  # the old file, or one the new dataset has not
        if name in staged:
            os.replace(new, target)
    final.swap_marker.unlink()
    shutil.rmtree(final.trash, ignore_errors=True)
    shutil.rmtree(final.tmp, ignore_errors=True)


def recover(out: Path) -> bool:
    """Finish a swap a kill interrupted (the marker is there and the staged files are complete); True
    when one was finished. Called before a run touches the RUN_DIR and when a run is interrupted."""
    final = RunDir(out)
    if not final.swap_marker.exists():
        return False
    _swap(final)
    return True
