"""A synthgen dataset for training: a local RUN_DIR or a Hub repo, pinned to a commit.

TRL's ``ScriptArguments`` has no revision, so a stock run trains on whatever the Hub repo's ``main`` holds
that day; a re-run after someone re-publishes silently trains on other data. ``dataset_revision`` pins the
commit that ``synthgen publish`` printed, and the split/column checks turn the usual KeyErrors deep inside
TRL into a message that names the fix.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trl import ScriptArguments

from synthgen.errors import TrainerError

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

__all__ = ["COLUMNS", "DataArguments", "first_row", "hub_dataset_name", "load_splits"]

logger = logging.getLogger(__name__)

# What each trainer reads; the RUN_DIR contract (DESIGN.md §3) names them so that TRL needs no conversion.
COLUMNS = {"sft": ("messages",), "prefs": ("prompt", "chosen", "rejected")}


@dataclass
class DataArguments(ScriptArguments):
    """TRL's ``ScriptArguments`` (``dataset_name``, ``dataset_config``, splits) plus ``dataset_revision``."""

    dataset_revision: str | None = field(
        default=None,
        metadata={
            "help": "Hub commit sha (or tag) of the dataset to train on; pin the one `synthgen publish` "
            "printed. Not allowed with a local RUN_DIR, which has no revisions."
        },
    )


def load_splits(
    args: DataArguments, *, kind: str, evaluate: bool
) -> tuple[Dataset | IterableDataset, Dataset | IterableDataset | None]:
    """(train, eval or None) of ``args.dataset_config``, holding the ``kind`` ("sft"/"prefs") columns."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetsError

    name = args.dataset_name
    if not name:
        raise TrainerError(
            "no dataset to train on",
            field="dataset_name",
            hint="a RUN_DIR made by `synthgen run`, or the Hub repo that `synthgen publish` pushed",
        )
    local = Path(name).expanduser()
    if local.exists():
        if args.dataset_revision:
            raise TrainerError(
                f"{name} is a local folder, which has no revisions to pin",
                field="dataset_revision",
                hint="remove dataset_revision, or set dataset_name to the published Hub repo id",
            )
        name = str(local)
    elif not args.dataset_revision:
        logger.warning(
            "dataset %s is not pinned: training on the current head of its main branch "
            "(set dataset_revision to the commit that `synthgen publish` printed)",
            name,
        )
    try:
        if local.exists() and not args.dataset_streaming:
            # datasets keys its cache of a local folder by folder name, config and card, not by the files: a
            # RUN_DIR regenerated under an unchanged card, or another one named alike, would load stale rows
            # from ~/.cache. A throwaway cache and in-memory tables (small data) always read the files.
            with tempfile.TemporaryDirectory(prefix="synthgen-data-") as cache:
                dataset: Any = load_dataset(
                    name, name=args.dataset_config, cache_dir=cache, keep_in_memory=True
                )
        else:
            dataset = load_dataset(
                name,
                name=args.dataset_config,
                revision=args.dataset_revision,
                streaming=args.dataset_streaming,
            )
    # missing repo/revision/config, offline without a cache, files that disagree with the card's split sizes
    except (OSError, ValueError, DatasetsError) as exc:
        raise TrainerError(
            f"cannot load dataset {name!r} (config {args.dataset_config!r}, "
            f"revision {args.dataset_revision or 'main'}): {exc}",
            field="dataset_name",
            hint="check the name, dataset_config (`sft` or `prefs`) and dataset_revision",
        ) from exc

    train = _split(dataset, args.dataset_train_split, "dataset_train_split")
    evaluation = _split(dataset, args.dataset_test_split, "dataset_test_split") if evaluate else None
    row = first_row(train)
    missing = [column for column in COLUMNS[kind] if column not in row]
    if missing:
        raise TrainerError(
            f"config {args.dataset_config!r} of {name} has no {', '.join(missing)} column",
            field="dataset_config",
            hint=f"use the `{kind}` config of a synthgen dataset ({', '.join(COLUMNS[kind])})",
        )
    return train, evaluation


def _split(dataset: Any, split: str, option: str) -> Any:
    if split not in dataset:
        hint = f"available: {', '.join(dataset)}"
        if option == "dataset_test_split":
            hint += "; or set eval_strategy: no"
        raise TrainerError(f"the dataset has no {split!r} split", field=option, hint=hint)
    return dataset[split]


def first_row(dataset: Dataset | IterableDataset) -> dict[str, Any]:
    """The row the preflight renders: the first one, which TRL would also tokenize first."""
    for row in dataset:
        return dict(row)
    raise TrainerError("the training split is empty", field="dataset_train_split")


def hub_dataset_name(args: DataArguments) -> str | None:
    """The dataset to name in a pushed model card: a Hub id, never a local path."""
    name = args.dataset_name
    return None if not name or Path(name).expanduser().exists() else name
