"""The dataset card: a YAML header the Hub and ``datasets`` understand, and a body a reader trusts.

The header declares the configs (``sft`` default, ``prefs``, ``seeds``) with their data files and a
``dataset_info`` whose features and row counts are read from the parquet files themselves, so
``datasets`` verifies what it loads against the card. The body says how the rows were made and by
which models and prompt versions, what was dropped and why, what it cost, how to train on a pinned
revision, and what not to trust. Publishing merges with the card on the Hub (:func:`merge_card`):
our YAML keys and ``##`` sections are regenerated, anything a person added by hand is kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .rundir import SPLITS, data_files

if TYPE_CHECKING:
    from .recipe import Recipe

__all__ = ["GENERATED_SECTIONS", "merge_card", "render_card", "size_category", "split_card", "with_repo"]

_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
REPO_PLACEHOLDER = "ORG/NAME"
GENERATED_SECTIONS = (
    "Dataset structure", "How it was made", "Models", "Prompt templates", "Seeds", "Counts and quality",
    "Tokens and cost", "Examples", "How to train", "Limitations", "Recipe", "Versions", "Citation",
)  # fmt: skip
_FOOTER = "Citation"


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "1M<n<10M")


# --- header ------------------------------------------------------------------------------------


def dataset_info(run_dir: Path) -> list[dict[str, Any]]:
    """Per config: features from the parquet schema, rows and bytes per split (``datasets``' YAML form)."""
    import pyarrow.parquet as pq
    from datasets import Features
    from datasets.info import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo

    infos = []
    for config, splits in data_files(run_dir).items():
        features, split_dict, download = None, SplitDict(), 0
        for split in splits:
            files = sorted((run_dir / "data" / config).glob(f"{split}-*.parquet"))
            features = features or Features.from_arrow_schema(pq.read_schema(files[0]))
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            size = sum(pq.read_table(f).nbytes for f in files)
            download += sum(f.stat().st_size for f in files)
            split_dict.add(SplitInfo(name=split, num_bytes=size, num_examples=rows))
        info = DatasetInfo(config_name=config, features=features, splits=split_dict)
        info.download_size, info.dataset_size = download, sum(s.num_bytes for s in split_dict.values())
        infos.append(info._to_yaml_dict())
    return infos


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


# --- body --------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 280) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _n(value: float) -> str:
    # thousands with commas: never mistaken for a phone number by the privacy gate
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4f}"


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _fence(text: str, lang: str = "text") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _first_row(run_dir: Path, config: str) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    for split in SPLITS:
        for path in sorted((run_dir / "data" / config).glob(f"{split}-*.parquet")):
            rows = pq.read_table(path).slice(0, 1).to_pylist()
            if rows:
                return dict(rows[0])
    return None


def _roles(recipe: Recipe) -> dict[str, list[str]]:
    """Profile -> where the recipe uses it (``dialogues.student``, ``prefs.pool[1]``, ...)."""
    roles: dict[str, list[str]] = {name: [] for name in recipe.models}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str) and value in roles:
            roles[value].append(path.removesuffix(".profile"))
        elif isinstance(value, Mapping):
            for key, child in value.items():
                walk(child, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for i, child in enumerate(value):
                walk(child, f"{path}[{i}]")

    for step in recipe.steps:
        walk(recipe.generator(step).config.model_dump(), step.name)
    if recipe.quality.verify_claims:
        roles[recipe.quality.verify_claims].append("quality.verify_claims")
    return roles


def recipe_view(recipe: Recipe) -> dict[str, Any]:
    """The recipe as published: paths relative to the recipe file (no local home directories)."""
    data: dict[str, Any] = json.loads(recipe.model_dump_json(by_alias=True, exclude_unset=True))

    def rel(p: str) -> str:
        try:
            return os.path.relpath(p, recipe.base_dir)
        except ValueError:  # another drive on Windows
            return Path(p).name

    data = {"name": data.pop("name"), "version": recipe.version, **data}
    data["seeds"] = [rel(p) for p in data["seeds"]]
    if data.get("personas"):
        data["personas"] = rel(data["personas"])
    if data.get("prompts"):
        data["prompts"] = {k: rel(v) for k, v in data["prompts"].items()}
    for step in data.get("steps", []):
        for key, value in step.get("config", {}).items():
            if isinstance(value, str) and os.path.isabs(value):
                step["config"][key] = rel(value)
            elif isinstance(value, list):
                step["config"][key] = [
                    rel(v) if isinstance(v, str) and os.path.isabs(v) else v for v in value
                ]
    return data


def _illustrative(recipe: Recipe) -> bool:
    """Sample seeds say so in their header comment (ILUSTRATIVO / illustrative)."""
    for path in recipe.seeds:
        try:
            head = Path(path).read_text(encoding="utf-8")[:2000].lower()
        except OSError:
            continue
        if "ilustrativ" in head or "illustrative" in head:
            return True
    return False


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


_CITATIONS = r"""@inproceedings{ding2023enhancing,
  title     = {Enhancing Chat Language Models by Scaling High-quality Instructional Conversations},
  author    = {Ding, Ning and Chen, Yulin and Xu, Bokai and Qin, Yujia and Zheng, Zhi and Hu, Shengding and
               Liu, Zhiyuan and Sun, Maosong and Zhou, Bowen},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.14233}
}

@inproceedings{cui2024ultrafeedback,
  title     = {{ULTRAFEEDBACK}: Boosting Language Models with Scaled {AI} Feedback},
  author    = {Cui, Ganqu and Yuan, Lifan and Ding, Ning and Yao, Guanming and He, Bingxiang and Zhu, Wei and
               Ni, Yuan and Xie, Guotong and Xie, Ruobing and Lin, Yankai and Liu, Zhiyuan and Sun, Maosong},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning},
  year      = {2024},
  url       = {https://arxiv.org/abs/2310.01377}
}

@misc{tunstall2023zephyr,
  title         = {Zephyr: Direct Distillation of {LM} Alignment},
  author        = {Tunstall, Lewis and Beeching, Edward and Lambert, Nathan and Rajani, Nazneen and
                   Rasul, Kashif and Belkada, Younes and Huang, Shengyi and von Werra, Leandro and
                   Fourrier, Cl{\'e}mentine and Habib, Nathan and Sarrazin, Nathan and Sanseviero, Omar and
                   Rush, Alexander M. and Wolf, Thomas},
  year          = {2023},
  eprint        = {2310.16944},
  archivePrefix = {arXiv},
  primaryClass  = {cs.LG}
}

@inproceedings{zheng2023judging,
  title     = {Judging {LLM}-as-a-Judge with {MT}-Bench and Chatbot Arena},
  author    = {Zheng, Lianmin and Chiang, Wei-Lin and Sheng, Ying and Zhuang, Siyuan and Wu, Zhanghao and
               Zhuang, Yonghao and Lin, Zi and Li, Zhuohan and Li, Dacheng and Xing, Eric P. and
               Zhang, Hao and Gonzalez, Joseph E. and Stoica, Ion},
  booktitle = {Advances in Neural Information Processing Systems 36, Datasets and Benchmarks Track},
  year      = {2023},
  url       = {https://arxiv.org/abs/2306.05685}
}

@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, Stefano and
               Manning, Christopher D. and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems 36},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.18290}
}

@misc{vonwerra2022trl,
  title        = {{TRL}: Transformer Reinforcement Learning},
  author       = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and
                  Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and
                  Gallou{\'e}dec, Quentin},
  year         = {2020},
  publisher    = {GitHub},
  howpublished = {\url{https://github.com/huggingface/trl}}
}"""


_METHODS = {
    "dialogue": "UltraChat-style simulation: a student-simulator model writes the opening question in a "
    "persona's voice and the follow-ups; the assistant model answers seeing the seed's facts (the seed and "
    "related seeds of its topic). One work item is a seed x persona x variant.",
    "preference": "UltraFeedback-style judging: for a user turn of each dialogue, K candidate answers "
    "come from a pool of grounded and ungrounded profiles; a judge scores each 1-10 against the seed "
    "answer with a rubric; the best becomes `chosen` and a worse one, by at least the configured "
    "margin, `rejected`.",
    "documents": "Question/answer extraction: the faculty's regulation documents are chunked and a model "
    "writes seed Q&A pairs grounded in each chunk (`generated/seeds.jsonl`).",
}
_COLUMNS = {
    "sft": "`messages` (the deployment system prompt, then alternating user/assistant turns), `prompt_id`, "
    "`dialogue_id`, `seed_ids`, `topic`, `persona`, `generator`, `model`: the ultrachat_200k layout that "
    "`trl sft` takes as is",
    "prefs": "`prompt` (messages ending in a user turn), `chosen` and `rejected` (one assistant "
    "message each), `score_chosen`, `score_rejected`, `prompt_id`, `seed_ids`, `candidates` (every "
    "candidate with its model, score and rationale), `judge_model`: TRL's conversational preference format",
    "seeds": "the seed question/answer pairs the rows were made from, with their `split` (provenance)",
}


def _structure(infos: list[dict[str, Any]]) -> str:
    rows = "\n".join(
        f"| `{info['config_name']}` | {s['name']} | {_n(s['num_examples'])} |"
        for info in infos
        for s in info["splits"]
    )
    columns = "\n".join(
        f"- `{info['config_name']}`: {_COLUMNS.get(info['config_name'], '')}" for info in infos
    )
    return f"""## Dataset structure

| config | split | rows |
|---|---|---|
{rows}

{columns}

Splits are assigned per seed, stratified by topic, before anything is generated, and every step reuses
them: no seed's paraphrases are in both train and test, so `test` measures answers to unseen questions.
The `dataset_info` above lists every column's type."""


def _method(recipe: Recipe, result: Mapping[str, Any]) -> str:
    steps = []
    for i, step in enumerate(recipe.steps, start=1):
        gen = recipe.generator(step)
        what = _METHODS.get(gen.name) or gen.description or (type(gen).__doc__ or "").strip().split("\n")[0]
        source = f" from `{step.from_}`" if step.from_ else ""
        steps.append(f"{i}. `{step.name}` ({gen.name} v{gen.version}{source}, writes `{gen.output}`): {what}")
    grounding = (
        "`closed_book`: the assistant saw the seed facts while writing, but the published system turn is the "
        "deployment system prompt alone, so a model trained on these rows must answer from what it learned."
        if recipe.grounding == "closed_book"
        else "`in_context`: the published system turn is the deployment system prompt followed by the facts, "
        "as a retrieval-augmented deployment would show them."
    )
    return f"""## How it was made

The Zephyr recipe on a faculty's own material: supervised fine-tuning on simulated dialogues, then DPO
on judged preference pairs.

{chr(10).join(steps)}

Every row passed quality filters (language, role flips, turns that point at hidden context, length,
near duplicates); dropped rows and failed requests are counted below by reason. Grounding: {grounding}
All sampling derives from the recipe seed ({recipe.seed}): the same recipe and response cache give the
same dataset."""


def _models(recipe: Recipe, result: Mapping[str, Any]) -> str:
    roles = _roles(recipe)
    rows = "\n".join(
        f"| {name} | `{p.model}` | {', '.join(f'`{r}`' for r in roles[name]) or 'unused'} | "
        f"{'default' if p.temperature is None else p.temperature} |"
        for name, p in recipe.models.items()
    )
    cached = sorted(set(result["usage"].get("cached_by_model", {})) - set(result.get("response_models", [])))
    reported = ", ".join(
        [f"`{m}`" for m in result.get("response_models", [])]
        + [f"`{m}` (from the response cache)" for m in cached]
    )
    offline = (
        " The `-offline` suffix marks synthgen's embedded offline provider: no model wrote these rows."
        if result["offline"]
        else ""
    )
    return f"""## Models

| profile | model (snapshot) | used as | temperature |
|---|---|---|---|
{rows}

Models the servers reported in their responses: {reported or "none"}.{offline}"""


def _prompts(result: Mapping[str, Any]) -> str:
    rows = "\n".join(
        f"| {role} | {p.get('version')} | {p.get('language')} | `{p.get('sha256')}` | `{p.get('source')}` |"
        for role, p in sorted(result.get("prompts", {}).items())
    )
    return f"""## Prompt templates

| role | version | language | sha256 | source |
|---|---|---|---|---|
{rows}"""


def _seeds(recipe: Recipe, result: Mapping[str, Any]) -> str:
    from .seeds import seeds_fingerprint

    topics = len({s.topic for s in recipe.loaded_seeds})
    splits = ", ".join(f"{k} {_n(v)}" for k, v in sorted(result.get("splits", {}).items()))
    note = (
        "\n\nThese seeds are **illustrative**: invented, plausible answers for a fictitious faculty, "
        "not real regulations. Replace them with the faculty's own before training an assistant "
        "people rely on."
        if _illustrative(recipe)
        else ""
    )
    return f"""## Seeds

{_n(len(recipe.loaded_seeds))} seed question/answer pairs on {topics} topics (the `seeds` config), split
per seed: {splits}. Seed fingerprint (sha256 of their canonical JSON):
`{seeds_fingerprint(recipe.loaded_seeds)}`.{note}"""


def _counts(result: Mapping[str, Any]) -> str:
    steps = result["steps"]
    table = "\n".join(
        f"| {name} | {c['generator']} v{c['version']} | {_n(c['items'])} | {_n(c['ok'])} | "
        f"{_n(c['failed'])} ({_pct(c['failed'], c['items'])}) | {_n(c['rejected'])} "
        f"({_pct(c['rejected'], c['items'])}) | {_n(c['not_started'])} | {_n(c['rows'])} | "
        f"{_n(c.get('rows_rejected', 0))} |"
        for name, c in steps.items()
    )
    reasons = [
        f"| {name} | {kind} | `{reason}` | {_n(n)} | {_pct(n, c['items'])} |"
        for name, c in steps.items()
        for kind, key in (("failure", "failures"), ("rejection", "rejections"))
        for reason, n in sorted(c.get(key, {}).items(), key=lambda kv: -kv[1])
    ]
    by_reason = (
        "| step | kind | reason | count | share of items |\n|---|---|---|---|---|\n" + "\n".join(reasons)
        if reasons
        else "No request failed and no row was rejected."
    )
    return f"""## Counts and quality

Every planned work item ends as rows, a failure or a rejection, each with its reason:
items = ok + failed + rejected + not started.

| step | generator | items | ok | failed | rejected | not started | rows | rows dropped |
|---|---|---|---|---|---|---|---|---|
{table}

{by_reason}"""


def _cost(result: Mapping[str, Any]) -> str:
    usage = result["usage"]
    rows = "".join(
        f"| `{model}` | {_n(u['requests'])} | {_n(u['prompt_tokens'])} | {_n(u['completion_tokens'])} | "
        f"${u['cost_usd']:.4f} |\n"
        for model, u in sorted(usage.get("by_model", {}).items())
    )
    total = usage["total"]
    budget = result.get("budget") or {}
    notes = [f"Tokens counted with {result.get('token_counter', 'the provider usage')}."]
    if usage.get("cache_hits"):
        notes.append(
            f"{_n(usage['cache_hits'])} answers came from the response cache and were not paid again."
        )
    if usage.get("unpriced_models"):
        notes.append("No price known for: " + ", ".join(f"`{m}`" for m in usage["unpriced_models"]) + ".")
    if budget.get("max_usd") is not None:
        notes.append(
            f"Budget ${budget['max_usd']:.2f}"
            + (": reached, nothing new was scheduled." if budget.get("exhausted") else ".")
        )
    total_row = (
        f"| **total** | {_n(total['requests'])} | {_n(total['prompt_tokens'])} | "
        f"{_n(total['completion_tokens'])} | ${result['cost_usd']:.4f} |"
    )
    return f"""## Tokens and cost

| model | requests | prompt tokens | completion tokens | cost |
|---|---|---|---|---|
{rows}{total_row}

{" ".join(notes)}"""


def _examples(run_dir: Path) -> str:
    parts = ["## Examples", "", "Texts are cut at 280 characters here; the data files hold them whole."]
    dialogue = _first_row(run_dir, "sft")
    if dialogue:
        turns = "\n".join(f"{m['role']}: {_clip(m['content'])}" for m in dialogue["messages"])
        about = f"persona `{dialogue.get('persona')}`, topic `{dialogue.get('topic')}`"
        parts += ["", f"One dialogue (`sft`, {about}):", "", _fence(turns)]
    pair = _first_row(run_dir, "prefs")
    if pair:
        context = "\n".join(f"{m['role']}: {_clip(m['content'], 160)}" for m in pair["prompt"][-3:])
        text = (
            f"{context}\n\nchosen (score {pair['score_chosen']}): {_clip(pair['chosen'][0]['content'])}\n\n"
            f"rejected (score {pair['score_rejected']}): {_clip(pair['rejected'][0]['content'])}"
        )
        about = f"judge `{pair.get('judge_model')}`, last turns of the prompt"
        parts += ["", f"One preference pair (`prefs`, {about}):", "", _fence(text)]
    return "\n".join(parts)


def _limitations(recipe: Recipe, result: Mapping[str, Any]) -> str:
    items = [
        "Synthetic data: every turn was written by a model. Rows inherit the errors and biases of "
        "those models, of the prompts, and of the seeds; the judge's scores are a model's opinion, "
        "not ground truth.",
        "Coverage is the seeds' coverage: questions about anything the seeds do not mention are not "
        "represented, and the assistant learns the facts as they were on the day the seeds were written.",
        "Students are simulated from personas; real students write differently (typos, mixed languages, "
        "several questions at once). Evaluate on real, held-out questions before deployment.",
    ]
    if _illustrative(recipe):
        items.append(
            "The seeds are illustrative, not a real faculty's regulations: do not deploy a model trained "
            "on this data to answer real students."
        )
    if result["offline"]:
        items.append(
            "Offline demo: synthgen's embedded offline provider wrote every answer by extracting "
            "sentences from the prompt. Use it to test pipelines, never to train an assistant."
        )
    if not result.get("complete", True):
        items.append("The run did not finish every planned item (see `not started` above).")
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items)


def _recipe(recipe: Recipe, result: Mapping[str, Any]) -> str:
    body = yaml.safe_dump(recipe_view(recipe), sort_keys=False, allow_unicode=True, width=100)
    return f"""## Recipe

Recipe fingerprint `{result.get("fingerprint", recipe.fingerprint())}` (what determines the rows:
seeds, models, sampling, steps, prompts, quality settings). The recipe as written (defaults apply to
what it omits), with paths relative to its file:

{_fence(body, "yaml")}"""


def _versions(result: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {name} | {version} |" for name, version in result.get("versions", {}).items())
    return f"## Versions\n\n| package | version |\n|---|---|\n{rows}"


def _citation() -> str:
    return (
        "## Citation\n\nThe methods this dataset follows: UltraChat (dialogue simulation), UltraFeedback "
        "(judged preferences), Zephyr (SFT then DPO), MT-Bench (LLM-as-judge), DPO and TRL.\n\n"
        + _fence(_CITATIONS, "bibtex")
    )


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
        f"{_n(counts.get('sft', 0))} simulated student/assistant dialogues (`sft`) for supervised "
        f"fine-tuning and {_n(counts.get('prefs', 0))} judged preference pairs (`prefs`) for DPO, "
        f"generated by [synthgen](https://pypi.org/project/synthgen/) from "
        f"{_n(len(recipe.loaded_seeds))} seed question/answer pairs (`seeds`)."
    )
    sections = [
        _structure(meta["dataset_info"]),
        _method(recipe, result),
        _models(recipe, result),
        _prompts(result),
        _seeds(recipe, result),
        _counts(result),
        _cost(result),
        _examples(run_dir),
        training_section(recipe.output.hub.repo_id or REPO_PLACEHOLDER, list(counts)).rstrip(),
        _limitations(recipe, result),
        _recipe(recipe, result),
        _versions(result),
        _citation(),
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return (
        f"---\n{front}---\n\n# {recipe.name}\n{offline}{description}\n{intro}\n\n"
        + "\n\n".join(sections)
        + "\n"
    )


# --- merging with the card on the Hub ----------------------------------------------------------

_FRONT = re.compile(r"\A\s*---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")


def split_card(text: str) -> tuple[dict[str, Any], str, list[tuple[str, str]]]:
    """(YAML metadata, text before the first ``##``, [(heading, section text)]); fences are skipped."""
    meta: dict[str, Any] = {}
    m = _FRONT.match(text)
    if m:
        loaded = yaml.safe_load(m.group(1))
        meta = loaded if isinstance(loaded, dict) else {}
        text = text[m.end() :]
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        f = _FENCE.match(line)
        if f and (fence is None or (f.group(1)[0] == fence[0] and len(f.group(1)) >= len(fence))):
            fence = None if fence else f.group(1)
        heading = _HEADING.match(line.rstrip("\r\n")) if fence is None else None
        if heading:
            sections.append((heading.group(1).strip(), [line]))
        else:
            (sections[-1][1] if sections else preamble).append(line)
    return meta, "".join(preamble), [(h, "".join(lines)) for h, lines in sections]


def _key(heading: str) -> str:
    return " ".join(heading.lower().split())


def merge_card(generated: str, remote: str) -> str:
    """Our card, plus what a person added on the Hub: foreign YAML keys and foreign ``##`` sections.

    Keys and sections we generate are ours (regenerated each time); foreign sections keep their order
    and go before our footer (Citation). Merging is idempotent, so an unchanged dataset republishes
    byte-identical and makes no commit.
    """
    ours, preamble, sections = split_card(generated)
    theirs, _, remote_sections = split_card(remote)
    owned = {_key(h) for h, _ in sections} | {_key(h) for h in GENERATED_SECTIONS}
    extra_meta = {k: v for k, v in theirs.items() if k not in ours}
    extra = [text.rstrip() + "\n\n" for h, text in remote_sections if _key(h) not in owned]
    if not extra_meta and not extra:
        return generated
    footer = next((i for i, (h, _) in enumerate(sections) if _key(h) == _key(_FOOTER)), len(sections))
    body = [text for _, text in sections[:footer]] + extra + [text for _, text in sections[footer:]]
    front = yaml.safe_dump({**ours, **extra_meta}, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{preamble}" + "".join(body)


def with_repo(card: str, repo_id: str) -> str:
    """The card with its ``## How to train`` section naming ``repo_id`` (publish knows the repo)."""
    meta, _, sections = split_card(card)
    configs = [c.get("config_name") for c in meta.get("configs", []) if isinstance(c, dict)]
    new = training_section(repo_id, [c for c in configs if c]).rstrip() + "\n\n"
    for heading, text in sections:
        if _key(heading) == _key("How to train"):
            return card.replace(text, new, 1)
    return card
