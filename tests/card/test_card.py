"""The dataset card: Hub-valid metadata that matches the files, a body with the provenance, and a
merge with the card on the Hub that keeps what a person added by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Features
from huggingface_hub import DatasetCard

from synthgen import load_recipe, run
from synthgen.card import render_card
from synthgen.card.header import size_category
from synthgen.card.merge import merge_card, split_card, with_repo
from synthgen.recipe import LICENSES, Recipe
from synthgen.seeds import seeds_fingerprint
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recipe]:
    tmp = tmp_path_factory.mktemp("card-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(tmp / "home"))
        recipe = load_recipe(DEMO)
        run(recipe, out=tmp / "run", offline=True, limit=4)
    return tmp / "run", recipe


@pytest.fixture
def run_dir(made: tuple[Path, Recipe]) -> Path:
    return made[0]


@pytest.fixture
def card(run_dir: Path) -> str:
    return (run_dir / "README.md").read_text(encoding="utf-8")


def test_header_is_valid_hub_metadata_matching_the_files(run_dir: Path, card: str) -> None:
    meta = DatasetCard(card).data.to_dict()
    assert meta["license"] in LICENSES and meta["license"] != "other"
    assert meta["language"] == ["es"]
    assert set(meta["task_categories"]) <= {"text-generation", "question-answering"}
    parquet = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.glob("data/*/*.parquet"))
    declared: set[str] = set()
    for config in meta["configs"]:
        for entry in config["data_files"]:
            matched = {p.relative_to(run_dir).as_posix() for p in run_dir.glob(entry["path"])}
            assert matched, entry  # every glob resolves
            declared |= matched
    assert sorted(declared) == parquet  # and together they cover every data file
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "prefs", "seeds"]
    assert [c["config_name"] for c in meta["configs"] if c.get("default")] == ["sft"]
    rows = sum(pq.read_metadata(run_dir / p).num_rows for p in parquet)
    assert meta["size_categories"] == [size_category(rows)]
    assert "offline-demo" in meta["tags"]


def test_dataset_info_matches_what_datasets_loads(run_dir: Path, card: str) -> None:
    datasets.disable_progress_bars()
    infos = {i["config_name"]: i for i in DatasetCard(card).data.to_dict()["dataset_info"]}
    assert set(infos) == {"sft", "prefs", "seeds"}
    for config, info in infos.items():
        loaded = datasets.load_dataset(str(run_dir), config)
        assert [s["name"] for s in info["splits"]] == list(loaded)
        for split in info["splits"]:
            assert loaded[split["name"]].num_rows == split["num_examples"]
            assert loaded[split["name"]].features == Features._from_yaml_list(info["features"])


def test_body_carries_the_provenance(made: tuple[Path, Recipe], card: str) -> None:
    run_dir, recipe = made
    result = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    for profile in recipe.models.values():
        assert f"`{profile.model}`" in card
    for model in result["response_models"]:
        assert f"`{model}`" in card
    for template in result["prompts"].values():
        assert template["sha256"] in card
    assert seeds_fingerprint(recipe.loaded_seeds) in card
    held_out = sorted(
        k for k, v in json.loads((run_dir / ".synthgen" / "splits.json").read_text()).items() if v == "test"
    )
    assert held_out and "Held out for evaluation (the test split" in card  # the eval seeds it excluded
    assert ", ".join(f"`{i}`" for i in held_out[:50]) in card
    assert result["fingerprint"] in card
    assert "`closed_book`" in card and "UltraChat-style" in card and "UltraFeedback-style" in card
    assert "`dialogues.student`" in card and "`prefs.judge`" in card  # roles, not just names
    for name, counts in result["steps"].items():
        assert f"| {name} | {counts['generator']} v{counts['version']} | {counts['items']} |" in card
    first = datasets.load_dataset(str(run_dir), "sft", split="train")[0]["messages"][1]["content"]
    assert first[:40] in card  # an example dialogue
    assert "chosen (score" in card and "rejected (score" in card  # an example pair
    assert "--dataset_config sft" in card and "--dataset_config prefs" in card
    assert "dataset_revision: $REV" in card and "revision=REV)" in card
    for key in (
        "ding2023enhancing",
        "cui2024ultrafeedback",
        "tunstall2023zephyr",
        "zheng2023judging",
        "vonwerra2022trl",
    ):
        assert "{" + key + "," in card
    assert "Offline demo" in card and "**illustrative**" in card
    embedded = yaml.safe_load(card.split("## Recipe", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0])
    assert embedded["name"] == recipe.name and embedded["seeds"] == [
        "../../seeds/faculty-sciences-es/seeds.yaml"
    ]
    assert str(REPO) not in card  # no local paths


def test_failure_and_rejection_rates_by_reason(made: tuple[Path, Recipe]) -> None:
    run_dir, recipe = made
    result: dict[str, Any] = copy.deepcopy(json.loads((run_dir / "run.json").read_text(encoding="utf-8")))
    step = result["steps"]["dialogues"]
    step.update(
        items=8, ok=5, failed=2, rejected=1, failures={"server_error": 2}, rejections={"role_flip": 1}
    )
    result["offline"], result["complete"] = False, False
    text = render_card(run_dir, recipe, result)
    assert "| dialogues | failure | `server_error` | 2 | 25.0% |" in text
    assert "| dialogues | rejection | `role_flip` | 1 | 12.5% |" in text
    assert "| 2 (25.0%) | 1 (12.5%) |" in text
    assert "Offline demo" not in text and "did not finish every planned item" in text


# --- merging with the card on the Hub ----------------------------------------------------------


def test_merge_keeps_foreign_keys_and_sections_and_regenerates_ours(card: str) -> None:
    remote = card.replace("---\n", "---\nthumbnail: logo.png\n", 1).replace(
        "pretty_name: ", "pretty_name: x", 1
    )
    remote = remote.replace("## Limitations\n", "## Limitations\n\nEdited by hand: gone on republish.\n", 1)
    remote += "\n## Contact\n\nWrite to the office.\n\n```text\n## not a heading inside a fence\n```\n"
    merged = merge_card(card, remote)
    meta, _, sections = split_card(merged)
    assert meta["thumbnail"] == "logo.png" and meta["pretty_name"] == "offline-demo"
    headings = [h for h, _ in sections]
    assert headings[-2:] == ["Contact", "Citation"]  # before our footer
    assert "## not a heading inside a fence" in merged and "Edited by hand" not in merged
    assert merge_card(card, merged) == merged  # idempotent: republishing makes no commit
    assert merge_card(card, card) == card
    DatasetCard(merged)  # still valid metadata


def test_merge_with_a_card_made_elsewhere(card: str) -> None:
    meta_yaml = "license: mit\nannotations_creators: [expert-generated]\nviewer: false\n"
    remote = f"---\n{meta_yaml}---\n# Old\n\n## Uses\n\nX.\n"
    merged = merge_card(card, remote)
    meta = DatasetCard(merged).data.to_dict()
    assert meta["license"] == "cc-by-4.0"  # ours
    assert meta["annotations_creators"] == ["machine-generated"]  # ours
    assert meta["viewer"] is False  # theirs
    assert "## Uses\n\nX.\n" in merged and merged.count("# offline-demo") == 1 and "# Old" not in merged


def test_with_repo_names_the_repo_in_the_training_section(card: str) -> None:
    named = with_repo(card, "my-faculty/data")
    assert "ORG/NAME" in card and "ORG/NAME" not in named
    assert "hf download my-faculty/data --repo-type dataset --revision $REV" in named
    assert named.replace("my-faculty/data", "ORG/NAME").replace("./data", "./NAME") == card
