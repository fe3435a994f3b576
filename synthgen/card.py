"""The dataset card: a YAML header the Hub and ``datasets`` understand, and a body a reader trusts.

The header declares the configs (``sft`` default, ``prefs``, ``seeds``) with their data files and a
``dataset_info`` whose features and row counts are read from the parquet files themselves, so
``datasets`` verifies what it loads against the card. This module assembles the card; the body's
sections are :mod:`synthgen.card_sections` (``## How to train`` is :mod:`synthgen.card_training`),
and publishing merges with the card on the Hub through :mod:`synthgen.card_merge`: our YAML keys and
``##`` sections are regenerated, anything a person added by hand is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .card_merge import merge_card, split_card, with_repo
from .card_sections import GENERATED_SECTIONS, body_sections, number
from .rundir import data_files

if TYPE_CHECKING:
    from .recipe import Recipe

__all__ = ["GENERATED_SECTIONS", "merge_card", "render_card", "size_category", "split_card", "with_repo"]

_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "1M<n<10M")


# --- header ------------------------------------------------------------------------------------


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
            files = sorted((run_dir / "data" / config).glob(f"{split}-*.parquet"))
            features = features or Features.from_arrow_schema(pq.read_schema(files[0]))
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            size = sum(pq.read_table(f).nbytes for f in files)
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


def render_card(run_dir: Path, recipe: Recipe, result: Mapping[str, Any]) -> str:
    """The README.md of a RUN_DIR (called at finalize, with the data files already written)."""
    meta = header(run_dir, recipe, result)
    counts = {i["config_name"]: sum(s["num_examples"] for s in i["splits"]) for i in meta["dataset_info"]}
    offline = (
        "\n> **Offline demo data.** Every answer was produced by synthgen's embedded offline provider, which "
        "extracts sentences from the prompt. Use it to test pipelines, not to train an assistant.\n"
        if result["offline"]
        else ""
    )
    description = f"\n{recipe.description.strip()}\n" if recipe.description.strip() else ""
    intro = (
        f"Synthetic training data for a faculty assistant (language `{recipe.language}`): "
        f"{number(counts.get('sft', 0))} simulated student/assistant dialogues (`sft`) for supervised "
        f"fine-tuning and {number(counts.get('prefs', 0))} judged preference pairs (`prefs`) for DPO, "
        f"generated by [synthgen](https://pypi.org/project/synthgen/) from "
        f"{number(len(recipe.loaded_seeds))} seed question/answer pairs (`seeds`)."
    )
    sections = body_sections(run_dir, recipe, result, meta["dataset_info"])
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return (
        f"---\n{front}---\n\n# {recipe.name}\n{offline}{description}\n{intro}\n\n"
        + "\n\n".join(sections)
        + "\n"
    )
