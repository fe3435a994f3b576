"""A run that cannot lose work or report success it did not have, against the loopback server.

Why these tests: after an outage the same command used to send 0 requests and keep every failure, a
run whose every item failed exited 0 with a dataset of seeds alone, and a preference step whose input
step produced nothing silently switched to one pair per seed (and spent money on it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthgen import load_recipe, run
from synthgen.errors import RecipeError, RunFailed
from synthgen.llm.offline import offline_reply
from tests.conftest import REPO
from tests.servers.openai_server import OpenAIServer, ServerConfig

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"
KEY = "SYNTHGEN_RELIABILITY_KEY"


def plausible(request: dict[str, Any]) -> str:
    return str(offline_reply(request)["choices"][0]["message"]["content"])


def recipe_file(tmp_path: Path, base_url: str, **profile: Any) -> Path:
    """The demo recipe on ``base_url``: one-turn dialogues, two candidates, two attempts per request."""
    recipe: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key in ("seeds", "personas"):
        recipe[key] = str((DEMO.parent / recipe[key]).resolve())
    for entry in recipe["models"].values():
        entry.update({"base_url": base_url, "api_key_env": KEY, "max_attempts": 2, **profile})
    del recipe["budget"]
    recipe["steps"][0]["config"]["turns"] = [1, 1]
    recipe["steps"][1]["config"]["candidates"] = 2
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(KEY, "sk-loopback")
    with OpenAIServer(ServerConfig(responder=plausible)) as served:
        yield served


def test_an_outage_exits_1_keeps_the_dataset_and_the_same_command_retries_what_failed(
    tmp_path: Path, server: OpenAIServer
) -> None:
    recipe, out = recipe_file(tmp_path, server.url), tmp_path / "run"
    first = run(recipe, out=out, limit=2)
    assert first.steps["dialogues"].rows == 2
    kept = {p: p.read_bytes() for p in (out / "run.json", out / "README.md")}

    server.config.fault_rate, server.config.faults = 1.0, ("500",)  # the endpoint goes down
    with pytest.raises(RunFailed, match=r"dialogues: 4 of 6 items failed .*http_500") as failed:
        run(recipe, out=out, limit=6)
    assert failed.value.exit_code == 1
    assert {p: p.read_bytes() for p in kept} == kept  # the good dataset was not replaced
    failures = [json.loads(line) for line in (out / ".synthgen" / "failures.jsonl").open()]
    assert {f["reason"] for f in failures} == {"http_500"} and len(failures) == 4

    server.config.fault_rate = 0.0  # back up: the same command retries the transient failures
    before = server.stats()["requests"]
    again = run(recipe, out=out, limit=6)
    assert server.stats()["requests"] > before
    assert again.steps["dialogues"].ok == 6 and again.steps["dialogues"].failed == 0
    # every attempt was paid: the failed ones' usage stays in the dataset's totals
    assert again.usage["total"]["requests"] >= again.usage_this_run["total"]["requests"]


def test_permanent_failures_are_kept_until_retry_failed(tmp_path: Path, server: OpenAIServer) -> None:
    recipe, out = recipe_file(tmp_path, server.url, max_reasks=0), tmp_path / "run"
    server.config.fault_rate, server.config.faults = 1.0, ("refusal",)
    with pytest.raises(RunFailed, match="refusal"):
        run(recipe, out=out, limit=2)
    server.config.fault_rate = 0.0
    before = server.stats()["requests"]
    with pytest.raises(RunFailed, match="refusal"):  # a refusal is not retried by itself
        run(recipe, out=out, limit=2)
    assert server.stats()["requests"] == before
    result = run(recipe, out=out, limit=2, retry_failed=True)
    assert result.steps["dialogues"].ok == 2 and server.stats()["requests"] > before


def test_an_input_step_without_rows_stops_the_step_that_reads_it(
    tmp_path: Path, server: OpenAIServer
) -> None:
    """Every dialogue is rejected (one-letter turns): the preference step must not fall back to seeds."""
    server.config.responder = lambda request: plausible(request) if request.get("response_format") else "x"
    recipe, out = recipe_file(tmp_path, server.url), tmp_path / "run"
    with pytest.raises(RunFailed) as failed:
        run(recipe, out=out, limit=3)
    assert "step prefs did not run: its input step 'dialogues' produced no row" in str(failed.value)
    assert "no step produced a row" in str(failed.value)
    assert server.stats()["requests"] == 3 * 2  # the student's opening and the assistant's answer only
    assert not (out / "run.json").exists()


def test_fixing_how_rows_are_fetched_resumes_and_the_first_release_run_dirs_resume(
    tmp_path: Path, server: OpenAIServer
) -> None:
    """base_url, api_key_env, limits, timeouts and prices do not change the rows: not in the fingerprint."""
    base = load_recipe(recipe_file(tmp_path, server.url))
    out = tmp_path / "run"
    run(base, out=out, limit=2)
    moved = load_recipe(
        recipe_file(
            tmp_path,
            server.url.replace("127.0.0.1", "localhost"),
            timeout=30,
            max_concurrency=4,
            requests_per_minute=100,
            prices={"input": 1, "output": 2},
        )
    )
    assert moved.fingerprint() == base.fingerprint()
    assert run(moved, out=out, limit=2).usage_this_run["total"]["requests"] == 0
    hotter = load_recipe(recipe_file(tmp_path, server.url, temperature=1.3))
    assert hotter.fingerprint() != base.fingerprint()

    state = out / ".synthgen" / "state.json"  # a RUN_DIR made by the first release
    legacy = {**json.loads(state.read_text()), "fingerprint": base.fingerprint(legacy=True)}
    state.write_text(json.dumps(legacy))
    assert run(base, out=out, limit=2).usage_this_run["total"]["requests"] == 0
    assert json.loads(state.read_text())["fingerprint"] == base.fingerprint()  # upgraded in place


def test_a_run_that_failed_before_any_item_does_not_pin_the_run_dir(
    tmp_path: Path, server: OpenAIServer
) -> None:
    out = tmp_path / "run"
    broken = load_recipe(recipe_file(tmp_path, server.url, temperature=1.9))
    state = out / ".synthgen"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"fingerprint": "0" * 64, "offline": False, "recipe": {}}))
    assert run(broken, out=out, limit=1).steps["dialogues"].items == 1  # nothing was journaled: start afresh


def test_a_budget_refuses_a_model_without_a_price(tmp_path: Path, server: OpenAIServer) -> None:
    path = recipe_file(tmp_path, server.url, model="my-local-llama")
    recipe = load_recipe(path)
    recipe.budget.max_usd = 1.0
    with pytest.raises(RecipeError, match="no known price for model 'my-local-llama'") as refused:
        run(recipe, out=tmp_path / "run", limit=1)
    assert refused.value.field == "models.student.prices" and "prices: {input: 0" in str(refused.value)
    assert server.stats()["requests"] == 0
    local = load_recipe(
        recipe_file(tmp_path, server.url, model="my-local-llama", prices={"input": 0, "output": 0})
    )
    local.budget.max_usd = 1.0
    assert run(local, out=tmp_path / "run", limit=1).steps["dialogues"].ok == 1


def test_a_swap_cut_short_never_publishes_a_mix_and_the_next_run_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between finalize's renames used to leave new data beside an old run.json or card."""
    import synthgen.pipeline.finalize as finalize
    from synthgen.rundir import RunDir

    out = tmp_path / "run"
    run(DEMO, out=out, offline=True, limit=2)
    old = (out / "run.json").read_bytes()
    real_replace, moves = finalize.os.replace, []

    def killed_after_two_moves(src: Any, dst: Any) -> None:
        if len(moves) == 2:
            raise KeyboardInterrupt  # as a kill would stop the process here
        moves.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(finalize.os, "replace", killed_after_two_moves)
    recipe = load_recipe(DEMO)
    with pytest.raises(KeyboardInterrupt):
        finalize.write_run_dir(
            out,
            recipe,
            run_result_for(out, recipe),
            {},
            json.loads((out / ".synthgen" / "splits.json").read_text()),
            {},
        )
    monkeypatch.setattr(finalize.os, "replace", real_replace)
    assert (out / "run.json").read_bytes() == old  # run.json moves last: the card and data are new
    assert RunDir(out).manifest_problems()  # publish would refuse this mix
    from synthgen.errors import PublishError
    from synthgen.hub.publish import publish

    with pytest.raises(PublishError, match=r"do not match run\.json"):
        publish(out, "org/name")
    again = run(DEMO, out=out, offline=True, limit=2)  # the next run finishes the swap first
    assert RunDir(out).manifest_problems() == [] and again.steps["dialogues"].rows == 2
    assert not (out / ".synthgen" / "swap.json").exists()


def run_result_for(out: Path, recipe: Any) -> Any:
    """run.json as a RunResult, with another fingerprint so the new files differ from the old ones."""
    from synthgen.pipeline.result import RunResult, StepCounts

    data = json.loads((out / "run.json").read_text())
    data["steps"] = {k: StepCounts(**v) for k, v in data["steps"].items()}
    data["fingerprint"] = "f" * 64
    data.pop("files", None)
    return RunResult(**data)


def test_an_unreachable_endpoint_exits_1_naming_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from synthgen.cli import main

    monkeypatch.setenv(KEY, "sk-loopback")
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    recipe = recipe_file(tmp_path, dead, max_attempts=1)
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run"), "--limit", "2"])
    assert result.exit_code == 1, result.output
    assert "no step produced a row" in result.output and dead in result.output
    assert "connection refused" in result.output
    assert not (tmp_path / "run" / "run.json").exists()


def test_without_a_key_or_a_terminal_the_run_says_what_is_missing(
    tmp_path: Path, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first release stopped at the budget question ("Aborted!", exit 1) and never named the key."""
    from click.testing import CliRunner

    from synthgen.cli import main

    recipe = yaml.safe_load(recipe_file(tmp_path, server.url).read_text(encoding="utf-8"))
    recipe["budget"] = {"max_usd": 0.0001}  # the estimate passes it: the gate would ask
    path = tmp_path / "budgeted.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    args = ["run", str(path), "--out", str(tmp_path / "run"), "--limit", "2"]
    monkeypatch.delenv(KEY)
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and f"${KEY} is empty" in missing.output, missing.output
    monkeypatch.setenv(KEY, "sk-loopback")
    unattended = CliRunner().invoke(main, args)  # CliRunner's stdin is no terminal
    assert unattended.exit_code == 1, unattended.output
    assert "pass --yes" in unattended.output and "Aborted" not in unattended.output
    assert server.stats()["requests"] == 0


def test_a_journal_line_that_is_not_an_entry_is_skipped_and_its_item_runs_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(DEMO, out=out, offline=True, limit=2)
    journal = out / ".synthgen" / "journal" / "dialogues.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(['{"status": "ok"}', "[1, 2]", *lines[1:]]) + "\n")
    again = run(DEMO, out=out, offline=True, limit=2)
    assert again.steps["dialogues"].items == 2 and again.steps["dialogues"].not_started == 0


def test_a_seed_set_too_small_for_a_test_split_is_said(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "seeds.yaml").write_text(
        "seeds:\n"
        "  - {id: a, topic: matrícula, question: '¿Cuándo es la matrícula?', answer: 'Del 15 al 31 de julio.'}\n"
        "  - {id: b, topic: becas, question: '¿Dónde pido la beca?', answer: 'En la sede electrónica.'}\n",
        encoding="utf-8",
    )
    recipe = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    recipe["seeds"] = "seeds.yaml"
    recipe.pop("personas")
    recipe["steps"] = recipe["steps"][:1]
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    said: list[str] = []
    run(folder / "recipe.yaml", out=tmp_path / "run", offline=True, notify=said.append)
    assert any("no seed went to the test split" in line for line in said)


@pytest.mark.parametrize("concurrency", [0, 1025, 1_000_000])
def test_the_api_bounds_concurrency_as_the_cli_does(tmp_path: Path, concurrency: int) -> None:
    from synthgen.errors import ConfigError

    with pytest.raises(ConfigError, match=r"outside 1\.\.1024"):
        run(DEMO, out=tmp_path / "run", offline=True, limit=1, concurrency=concurrency)
    assert not (tmp_path / "run").exists()


def test_a_step_whose_first_items_all_fail_alike_stops_instead_of_paying_for_every_item(
    tmp_path: Path, server: OpenAIServer
) -> None:
    """Every answer is cut at the token limit (a limit set too low fails every item the same way)."""
    server.config.fault_rate, server.config.faults = 1.0, ("truncated",)
    recipe = recipe_file(tmp_path, server.url, max_concurrency=2)
    with pytest.raises(RunFailed, match=r"first 10 items all failed with length: stopped early") as failed:
        run(recipe, out=tmp_path / "run", limit=40)
    assert "fix the cause, then re-run" in str(failed.value)
    journal = (tmp_path / "run" / ".synthgen" / "journal" / "dialogues.jsonl").read_text().splitlines()
    # the first ten, and at most what the 8 workers (2 x 2 keys of concurrency 2) had in flight
    assert 10 <= len(journal) <= 10 + 8
    assert "models.student (student call): the answer was cut at" in journal[0]  # which of the calls
    server.config.fault_rate = 0.0  # fixed: the same command goes on with the rest
    assert run(recipe, out=tmp_path / "run", limit=40).steps["dialogues"].not_started == 0


def test_unpriced_models_show_as_n_a_never_as_zero_dollars(tmp_path: Path, server: OpenAIServer) -> None:
    from click.testing import CliRunner

    from synthgen.cli import main

    recipe = recipe_file(tmp_path, server.url, model="my-local-llama")
    estimated = CliRunner().invoke(main, ["estimate", str(recipe), "--offline"])
    assert estimated.exit_code == 0, estimated.output
    assert "my-local-llama: ~" in estimated.output and "n/a (unpriced" in estimated.output
    assert "+ n/a for unpriced my-local-llama" in estimated.output
    ran = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run"), "--limit", "1"])
    assert ran.exit_code == 0, ran.output
    assert "+ n/a for unpriced my-local-llama" in ran.output
