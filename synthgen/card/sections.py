"""The ``##`` sections of the card body: what a reader needs to trust, reproduce and train on the data.

Each section is rendered from the recipe, the run result and the data files: how the rows were made
and by which models and prompt versions, what was dropped and why, what it cost, examples, what not
to trust, the recipe itself. :data:`GENERATED_SECTIONS` names every heading written here, so
:func:`synthgen.card.merge.merge_card` knows which sections are ours to regenerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from synthgen.card.citation import citation_section
from synthgen.card.training import REPO_PLACEHOLDER, training_section
from synthgen.rundir import RunDir

if TYPE_CHECKING:
    from synthgen.recipe import Recipe

__all__ = ["GENERATED_SECTIONS", "body_sections", "number"]

GENERATED_SECTIONS = (
    "Dataset structure", "How it was made", "Models", "Prompt templates", "Seeds", "Counts and quality",
    "Human review", "Tokens and cost", "Examples", "How to train", "Limitations", "Recipe", "Versions", "Citation",
)  # fmt: skip


def _clip(text: str, limit: int = 280) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def number(value: float) -> str:
    # thousands with commas: never mistaken for a phone number by the privacy gate
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4f}"


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _fence(text: str, lang: str = "text") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


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
        f"| `{info['config_name']}` | {s['name']} | {number(s['num_examples'])} |"
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
        what = gen.card_method or gen.description or (type(gen).__doc__ or "").strip().split("\n")[0]
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


HELD_OUT_LISTED = 50  # seed ids named in the card; the `seeds` config's test split has them all


def _held_out(run_dir: Path) -> str:
    """The seeds held out for evaluation, by id: whoever evaluates a model trained on this dataset
    must not train on them, and `synthgen evaluate`'s held-out set is exactly these."""
    test = sorted(k for k, v in RunDir(run_dir).read_splits().items() if v == "test")
    if not test:
        return ""
    shown = ", ".join(f"`{i}`" for i in test[:HELD_OUT_LISTED])
    more = f" and {number(len(test) - HELD_OUT_LISTED)} more" if len(test) > HELD_OUT_LISTED else ""
    return (
        f"\n\nHeld out for evaluation (the test split: no train row was made from them): {shown}{more}. "
        "The `seeds` config lists each seed with its split."
    )


def _seeds(recipe: Recipe, result: Mapping[str, Any], run_dir: Path) -> str:
    from synthgen.seeds import seeds_fingerprint

    topics = len({s.topic for s in recipe.loaded_seeds})
    splits = ", ".join(f"{k} {number(v)}" for k, v in sorted(result.get("splits", {}).items()))
    note = (
        "\n\nThese seeds are **illustrative**: invented, plausible answers for a fictitious faculty, "
        "not real regulations. Replace them with the faculty's own before training an assistant "
        "people rely on."
        if _illustrative(recipe)
        else ""
    )
    return f"""## Seeds

{number(len(recipe.loaded_seeds))} seed question/answer pairs on {topics} topics (the `seeds` config), split
per seed: {splits}. Seed fingerprint (sha256 of their canonical JSON):
`{seeds_fingerprint(recipe.loaded_seeds)}`.{_held_out(run_dir)}{note}"""


def _counts(result: Mapping[str, Any]) -> str:
    steps = result["steps"]
    table = "\n".join(
        f"| {name} | {c['generator']} v{c['version']} | {number(c['items'])} | {number(c['ok'])} | "
        f"{number(c['failed'])} ({_pct(c['failed'], c['items'])}) | {number(c['rejected'])} "
        f"({_pct(c['rejected'], c['items'])}) | {number(c['not_started'])} | {number(c['rows'])} | "
        f"{number(c.get('rows_rejected', 0))} |"
        for name, c in steps.items()
    )
    reasons = [
        f"| {name} | {kind} | `{reason}` | {number(n)} | {_pct(n, c['items'])} |"
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


def _review(result: Mapping[str, Any]) -> list[str]:
    """People's decisions (``synthgen review``), once anyone made one: how much of the data they read."""
    review = result.get("review") or {}
    if not review.get("decisions"):
        return []
    stale = review.get("stale", [])
    kept = sum(review.get(k, 0) for k in ("approved", "edited", "swapped", "unreviewed"))
    cells = [number(review[k]) for k in ("reviewed", "approved", "edited", "swapped", "rejected")]
    cells += [f"{number(review['unreviewed'])} ({_pct(review['unreviewed'], kept)})", number(len(stale))]
    not_applied = (
        "\n\nDecisions not applied because their row changed since it was reviewed (or is gone): "
        + ", ".join(f"`{line}`" for line in stale[:10])
        if stale
        else ""
    )
    return [
        f"""## Human review

People from the office read rows in `synthgen review` before this dataset was finalized
({number(review["decisions"])} decisions by {number(review["reviewers"])} reviewer(s)). Rejected rows were
removed with the reason `human: <reason>` (tied pairs as `human: tie`); edited dialogues carry the
corrected text, swapped pairs the corrected preference. The `reviewed` column says which rows a person
checked (`approved`, `edited`, `swapped`; empty: not reviewed).

| reviewed | approved | edited | swapped | rejected | published rows not reviewed | decisions not applied |
|---|---|---|---|---|---|---|
| {" | ".join(cells)} |{not_applied}"""
    ]


def _cost(result: Mapping[str, Any]) -> str:
    usage = result["usage"]
    unpriced = set(usage.get("unpriced_models", ()))
    rows = "".join(
        f"| `{model}` | {number(u['requests'])} | {number(u['prompt_tokens'])} | {number(u['completion_tokens'])} | "
        + ("n/a (unpriced) |\n" if model in unpriced else f"${u['cost_usd']:.4f} |\n")
        for model, u in sorted(usage.get("by_model", {}).items())
    )
    total = usage["total"]
    budget = result.get("budget") or {}
    notes = [f"Tokens counted with {result.get('token_counter', 'the provider usage')}."]
    if usage.get("cache_hits"):
        notes.append(
            f"{number(usage['cache_hits'])} answers came from the response cache and were not paid again."
        )
    if usage.get("unpriced_models"):
        notes.append(
            "No price known for: "
            + ", ".join(f"`{m}`" for m in usage["unpriced_models"])
            + " (the total leaves them out)."
        )
    if prices := result.get("prices"):
        dated = f", {prices['date']}" if prices.get("date") else ""
        notes.append(f"Prices from {prices['source']} {prices.get('version', '')}{dated}.".replace(" .", "."))
    if batch := result.get("batch"):
        profiles = ", ".join(f"`{name}` (`{model}`)" for name, model in sorted(batch["profiles"].items()))
        notes.append(
            f"Calls of {profiles} went through OpenAI's Batch API at the batch price: "
            f"{number(batch['requests'])} requests in {number(batch['batches'])} batches"
            + (
                f", {number(batch['resubmitted'])} resubmitted after an expired or failed batch"
                if batch["resubmitted"]
                else ""
            )
            + "."
        )
    if budget.get("max_usd") is not None:
        notes.append(
            f"Budget ${budget['max_usd']:.2f}"
            + (": reached, nothing new was scheduled." if budget.get("exhausted") else ".")
        )
    total_row = (
        f"| **total** | {number(total['requests'])} | {number(total['prompt_tokens'])} | "
        f"{number(total['completion_tokens'])} | ${result['cost_usd']:.4f} |"
    )
    return f"""## Tokens and cost

| model | requests | prompt tokens | completion tokens | cost |
|---|---|---|---|---|
{rows}{total_row}

{" ".join(notes)}"""


def _examples(run_dir: Path) -> str:
    parts = ["## Examples", "", "Texts are cut at 280 characters here; the data files hold them whole."]
    dialogue = RunDir(run_dir).first_row("sft")
    if dialogue:
        turns = "\n".join(f"{m['role']}: {_clip(m['content'])}" for m in dialogue["messages"])
        about = f"persona `{dialogue.get('persona')}`, topic `{dialogue.get('topic')}`"
        parts += ["", f"One dialogue (`sft`, {about}):", "", _fence(turns)]
    pair = RunDir(run_dir).first_row("prefs")
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
    body = yaml.safe_dump(recipe.portable(), sort_keys=False, allow_unicode=True, width=100)
    return f"""## Recipe

Recipe fingerprint `{result.get("fingerprint") or recipe.fingerprint()}` (what determines the rows:
seeds, models, sampling, steps, prompts, quality settings). The recipe as written (defaults apply to
what it omits), with paths relative to its file:

{_fence(body, "yaml")}"""


def _versions(result: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {name} | {version} |" for name, version in result.get("versions", {}).items())
    return f"## Versions\n\n| package | version |\n|---|---|\n{rows}"


def body_sections(
    run_dir: Path, recipe: Recipe, result: Mapping[str, Any], infos: list[dict[str, Any]]
) -> list[str]:
    """The body's sections, in :data:`GENERATED_SECTIONS` order; ``infos`` is the header's ``dataset_info``."""
    configs = [info["config_name"] for info in infos]
    return [
        _structure(infos),
        _method(recipe, result),
        _models(recipe, result),
        _prompts(result),
        _seeds(recipe, result, run_dir),
        _counts(result),
        *_review(result),
        _cost(result),
        _examples(run_dir),
        training_section(recipe.output.hub.repo_id or REPO_PLACEHOLDER, configs).rstrip(),
        _limitations(recipe, result),
        _recipe(recipe, result),
        _versions(result),
        citation_section(),
    ]
