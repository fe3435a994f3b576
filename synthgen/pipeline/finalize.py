"""Finalize: write the dataset (data, card, run.json) into a RUN_DIR all at once.

Everything is written into ``.synthgen/tmp`` first and swapped into place at the end, so a crash never
leaves a half-written dataset, and the old dataset stays whole until the new one is complete. Rows
land in the config of their output kind; seeds are published as the ``seeds`` config (provenance)
and seeds a step generated from documents as ``generated/seeds.jsonl``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from synthgen.card import render_card
from synthgen.pipeline.result import RunResult
from synthgen.recipe import Recipe
from synthgen.records import OUTPUT_KINDS
from synthgen.reviews import write_unreviewed
from synthgen.rundir import PUBLISHED, SPLITS, RunDir, file_sha256

__all__ = ["recover", "write_reports", "write_run_dir"]


#: rows converted to Arrow at a time: memory holds one batch, whatever the dataset's size
BATCH_ROWS = 1000


def _batches(rows: Callable[[], Iterable[Mapping[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows():
        batch.append(dict(row))
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _to_parquet(rows: Callable[[], Iterable[Mapping[str, Any]]], path: Path) -> int:
    """Stream ``rows()`` into one parquet file in batches; the number of rows written (0: no file).

    Two passes over the rows (they come from disk): the first unifies the batches' Arrow schemas (a
    field null in one batch and text in another, an int score here and a float there), the second
    writes each batch under that schema with the Hugging Face features metadata that
    ``Dataset.to_parquet`` writes, so readers see the same dataset as when it was built in memory.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pa.Table.from_pylist(batch).schema for batch in _batches(rows)]
    if not schemas:
        return 0
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    schema = datasets.Features.from_arrow_schema(unified).arrow_schema
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in _batches(rows):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            written += len(batch)
    return written


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "__split"}


def _split_rows(sources: Sequence[Iterable[Mapping[str, Any]]], split: str) -> Iterator[dict[str, Any]]:
    return (_public(row) for source in sources for row in source if row["__split"] == split)


def _seed_rows(recipe: Recipe, splits: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    for seed in recipe.loaded_seeds:
        row = {**seed.model_dump(mode="json"), "split": splits[seed.id]}
        row["tags"] = list(row["tags"])
        row["source"] = row["source"] or {"document": "", "article": None}
        yield row


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
    outputs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    splits: Mapping[str, str],
    reports: Mapping[str, list[dict[str, Any]]],
    *,
    unreviewed: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]] | None = None,
) -> None:
    """Write data/, README.md and run.json atomically; ``reports`` (failed, rejected) go under .synthgen/.

    ``outputs``: per output kind, the row sources of the steps that write it (each a
    :class:`~synthgen.pipeline.spool.RowSpool` or a list, rows with ``__split``), read in order.
    ``unreviewed``: the same sources before people's decisions (synthgen review), kept under .synthgen/.
    """
    final = RunDir(out)
    shutil.rmtree(final.tmp, ignore_errors=True)
    staged = RunDir(final.tmp)
    staged.path.mkdir(parents=True)
    for kind in OUTPUT_KINDS.values():
        sources = outputs.get(kind.name, [])
        for split in () if kind.generated else SPLITS:
            _to_parquet(partial(_split_rows, sources, split), staged.data_file(kind.name, split))
    _to_parquet(partial(_seed_rows, recipe, splits), staged.data_file("seeds", "train"))
    for kind in OUTPUT_KINDS.values():
        if kind.generated and any(len(source) for source in outputs.get(kind.name, [])):
            path = staged.generated(kind.name)
            path.parent.mkdir(exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                for source in outputs[kind.name]:
                    for row in source:
                        f.write(json.dumps(_public(row), ensure_ascii=False) + "\n")
    staged.card.write_text(render_card(staged.path, recipe, result.to_json()), encoding="utf-8")
    # run.json last: it lists the sha256 of every other published file, so a reader (publish) can
    # tell a complete dataset from a mix of two
    result.files = {f: file_sha256(staged.path / f) for f in staged.published_names()}
    staged.run_json.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    write_reports(out, reports)
    if unreviewed is not None:
        write_unreviewed(final.unreviewed, {k: itertools.chain(*v) for k, v in unreviewed.items()})
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
