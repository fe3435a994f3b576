"""The card's YAML header: configs with their data files, and ``dataset_info`` read from the parquet
files themselves, so ``datasets`` verifies what it loads against the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthgen.rundir import RunDir, data_files

if TYPE_CHECKING:
    from synthgen.recipe import Recipe

__all__ = ["dataset_info", "header", "size_category"]


_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "1M<n<10M")


def _loaded_bytes(parquet: Any) -> int:
    """The Arrow size of a parquet file, read one row group at a time (a whole file at once made
    finalize's peak memory grow with the dataset); the sum equals the whole table's ``nbytes``, whose
    columns are chunked by row group."""
    return sum(parquet.read_row_group(i).nbytes for i in range(parquet.num_row_groups))


def dataset_info(run_dir: Path) -> list[dict[str, Any]]:
    """Per config: features from the parquet schema, rows and bytes per split, in the YAML form
    ``datasets`` itself writes into a card (``DatasetInfosDict.to_dataset_card_data``)."""
    import pyarrow.parquet as pq
    from datasets import Features
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from huggingface_hub import DatasetCardData

    infos = DatasetInfosDict()
    for config, splits in data_files(run_dir).items():
        features, split_dict, download = None, SplitDict(), 0
        for split in splits:
            files = RunDir(run_dir).parquet_files(config, split)
            features = features or Features.from_arrow_schema(pq.read_schema(files[0]))
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            size = sum(_loaded_bytes(pq.ParquetFile(f)) for f in files)
            download += sum(f.stat().st_size for f in files)
            split_dict.add(SplitInfo(name=split, num_bytes=size, num_examples=rows))
        info = DatasetInfo(features=features, splits=split_dict)
        info.download_size, info.dataset_size = download, sum(s.num_bytes for s in split_dict.values())
        infos[config] = info
    card_data = DatasetCardData()
    infos.to_dataset_card_data(card_data)
    found = card_data.to_dict().get("dataset_info", [])
    return [found] if isinstance(found, dict) else list(found)  # one config: datasets writes a mapping


def header(run_dir: Path, recipe: Recipe, result: Mapping[str, Any]) -> dict[str, Any]:
    files = data_files(run_dir)
    configs = [
        {
            "config_name": name,
            **({"default": True} if name == "sft" else {}),
            "data_files": [{"split": split, "path": glob} for split, glob in splits.items()],
        }
        for name, splits in files.items()
    ]
    infos = dataset_info(run_dir)
    rows = sum(s["num_examples"] for info in infos for s in info["splits"])
    return {
        "pretty_name": recipe.name,
        "language": [recipe.language],
        "license": recipe.output.license,
        "task_categories": ["text-generation", "question-answering"],
        "size_categories": [size_category(rows)],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": ["original"],
        "tags": ["synthetic", "synthgen", "sft", "dpo", "ultrachat-style", "ultrafeedback-style"]
        + (["offline-demo"] if result["offline"] else []),
        "configs": configs,
        "dataset_info": infos,
    }
