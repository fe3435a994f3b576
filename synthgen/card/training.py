"""The card's ``## How to train`` section: how to load and train on a pinned revision of the dataset.

It lives apart from the other sections because it is rendered twice: once when the RUN_DIR is
written (the repo may still be unknown: :data:`REPO_PLACEHOLDER`), and again by
:func:`synthgen.card.merge.with_repo` when publishing knows the repo id.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["REPO_PLACEHOLDER", "training_section"]

REPO_PLACEHOLDER = "ORG/NAME"


def training_section(repo_id: str, configs: Sequence[str]) -> str:
    """``## How to train``: TRL's CLIs and the trainer scripts on a pinned revision of ``repo_id``."""
    name = repo_id.split("/")[-1]
    prefs = "prefs" in configs
    trl = [
        f"hf download {repo_id} --repo-type dataset --revision $REV --local-dir ./{name}",
        f"trl sft --model_name_or_path Qwen/Qwen2.5-1.5B-Instruct --dataset_name ./{name} "
        "--dataset_config sft --output_dir sft-model",
    ]
    if prefs:
        trl.append(
            f"trl dpo --model_name_or_path sft-model --dataset_name ./{name} --dataset_config prefs "
            "--output_dir dpo-model"
        )
    prefs_line = f'prefs = load_dataset("{repo_id}", "prefs", revision=REV)    # prompt, chosen, rejected'
    prefs_line = prefs_line if prefs else ""
    configs_yaml = "\n".join(
        f"# {c}.yaml: python -m trainer.{c if c == 'sft' else 'dpo'} --config {c}.yaml\n"
        f"dataset_name: {repo_id}\ndataset_config: {c}\ndataset_revision: $REV   # a commit sha or tag"
        for c in ("sft", "prefs")
        if c in configs
    )
    return f"""## How to train

Pin the revision you train on: `REV` is a commit sha (printed by `synthgen publish` and recorded in
the RUN_DIR's `.synthgen/publish.json`) or one of this repository's tags. A branch name is not a pin.

```python
from datasets import load_dataset
sft = load_dataset("{repo_id}", "sft", revision=REV)        # messages: system, user, assistant, ...
{prefs_line}
```

TRL's own CLIs take the columns unchanged (SFT on `sft`, then DPO on `prefs`: the Zephyr recipe).
Their `ScriptArguments` have no revision, so download the pinned snapshot and point at it:

```bash
{chr(10).join(trl)}
```

synthgen's trainer scripts (TRL + PEFT) pin the revision themselves:

```yaml
{configs_yaml}
```
"""
