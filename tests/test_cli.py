"""The ``synthgen`` command as a user meets it: help with examples, init -> validate, an offline run ->
report, estimate, and configuration mistakes (a wrong key) as exit 2 naming the field, never the secret."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq
import pydantic
import pytest
import yaml
from click.testing import CliRunner, Result

from synthgen.cli import main
from synthgen.llm.offline import offline_reply
from synthgen.llm.profile import MAX_CONCURRENCY, ModelProfile
from synthgen.llm.usage import price_for
from tests.servers.openai_server import OpenAIServer, ServerConfig

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "offline-demo" / "recipe.yaml"
COMMANDS = sorted(main.commands)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def console_script() -> list[str]:
    """The installed ``synthgen`` entry point (the real process and exit status), else ``python -m``."""
    script = Path(sys.executable).with_name("synthgen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "synthgen.cli"]


def demo_copy(tmp_path: Path, *, seeds: int | None = None) -> dict[str, Any]:
    """The offline demo recipe as a dict with absolute paths; ``seeds=N`` keeps only its first N seeds."""
    recipe: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key in ("seeds", "personas"):
        recipe[key] = str((DEMO.parent / recipe[key]).resolve())
    if seeds is not None:
        data = yaml.safe_load(Path(recipe["seeds"]).read_text(encoding="utf-8"))
        data["seeds"] = data["seeds"][:seeds]
        subset = tmp_path / "demo-seeds.yaml"
        subset.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        recipe["seeds"] = str(subset)
        personas = tmp_path / "personas.yaml"  # beside its seeds, where a recipe may read it
        personas.write_text(Path(recipe["personas"]).read_text(encoding="utf-8"), encoding="utf-8")
        recipe["personas"] = str(personas)
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def files_under(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


# --- help ------------------------------------------------------------------------------------------------


def test_main_help_has_an_example_and_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "synthgen run recipes/offline-demo/recipe.yaml --offline" in result.output
    for command in ("init", "validate", "estimate", "run", "report", "generators"):
        assert re.search(rf"^\s+{command}\s", result.output, re.M), command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    example = result.output.split("Example", 1)[-1]
    assert "Example" in result.output and f"synthgen {command}" in example, result.output


def test_console_script_help() -> None:
    proc = subprocess.run(
        [*console_script(), "--help"], capture_output=True, text=True, env=os.environ.copy(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout and "validate" in proc.stdout


# --- generators, init ------------------------------------------------------------------------------------


def test_generators_lists_builtins_with_versions() -> None:
    result = invoke("generators")
    assert result.exit_code == 0, result.output
    for name, output in (("dialogue", "sft"), ("preference", "prefs"), ("documents", "seeds")):
        assert re.search(rf"^{name}\s+v\d+\s+{output}\s+\S", result.output, re.M), result.output


def test_init_creates_a_recipe_that_validates_and_never_overwrites(tmp_path: Path, hermetic: Path) -> None:
    target = tmp_path / "Facultad de Ciencias.2025"  # not a valid recipe name as is: init slugs it
    result = invoke("init", target, "--language", "es")
    assert result.exit_code == 0, result.output
    created = {target / "recipe.yaml", target / "seeds" / "seeds.yaml", target / "seeds" / "personas.yaml"}
    assert {p for p in target.rglob("*") if p.is_file()} == created
    assert all(f"created {p}" in result.output for p in created)
    recipe = yaml.safe_load((target / "recipe.yaml").read_text(encoding="utf-8"))
    assert recipe["language"] == "es" and recipe["name"] == "facultad-de-ciencias-2025"
    assert "Facultad" in recipe["system_prompt"]  # Spanish starter content

    seeds = target / "seeds" / "seeds.yaml"
    refused = invoke("validate", target / "recipe.yaml")  # the starter answers are placeholders
    assert refused.exit_code == 2, refused.output
    line = next(
        n for n, text in enumerate(seeds.read_text(encoding="utf-8").splitlines(), 1) if "answer:" in text
    )
    assert refused.stderr.startswith(f"error: {seeds.resolve()}:{line}: seeds[0].answer: "), refused.stderr
    assert "placeholder text of `synthgen init`" in refused.stderr and "real answer" in refused.stderr
    edited = yaml.safe_load(seeds.read_text(encoding="utf-8"))
    for seed in edited["seeds"]:  # the faculty writes its real answers
        seed["answer"] = seed["answer"].replace(
            "Sustituye este texto por la respuesta real de tu facultad.", ""
        )
    seeds.write_text(yaml.safe_dump(edited, allow_unicode=True), encoding="utf-8")
    checked = invoke("validate", target / "recipe.yaml")
    assert checked.exit_code == 0, checked.output
    assert "language es" in checked.output and "step dialogues" in checked.output

    (target / "seeds" / "seeds.yaml").write_text("seeds: []  # being edited\n", encoding="utf-8")
    before = files_under(target, hermetic)
    again = invoke("init", target, "--language", "es")
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "never overwrites" in again.stderr
    assert files_under(target, hermetic) == before


def test_init_unknown_language(tmp_path: Path) -> None:
    result = invoke("init", tmp_path / "new", "--language", "xx")
    assert result.exit_code == 2
    assert "--language" in result.stderr and "'xx'" in result.stderr and "es, en" in result.stderr
    assert not (tmp_path / "new").exists()


# --- the wrong kind of file ------------------------------------------------------------------------------

EVAL = DEMO.with_name("eval.yaml")
SHIPPED_SEEDS = DEMO.parents[2] / "seeds" / "faculty-sciences-es"


def test_evaluate_given_a_generation_recipe_says_which_file_it_wants() -> None:
    """Before: twelve schema errors (name ok, candidates missing, steps unknown, ...) for one mistake."""
    result = invoke("evaluate", DEMO, "--offline")
    assert result.exit_code == 2, result.output
    error = result.stderr.removeprefix("error: ")
    assert error.count("\n") == 1, error  # one message
    line = DEMO.read_text(encoding="utf-8").splitlines().index("steps:") + 1
    assert error.startswith(f"{DEMO}:{line}: steps: this is a generation recipe, not an eval recipe"), error
    assert "recipes/offline-demo/eval.yaml" in error and "synthgen run" in error


@pytest.mark.parametrize("command", ["validate", "run", "estimate"])
def test_generation_commands_given_an_eval_recipe_say_so(command: str, tmp_path: Path) -> None:
    args = ("--offline", "--out", tmp_path / "run") if command == "run" else ()
    result = invoke(command, EVAL, *args)
    assert result.exit_code == 2, result.output
    error = result.stderr.removeprefix("error: ")
    assert error.count("\n") == 1, error
    line = next(
        n for n, text in enumerate(EVAL.read_text(encoding="utf-8").splitlines(), 1) if text == "candidates:"
    )
    assert error.startswith(f"{EVAL}:{line}: candidates: this is an eval recipe, not a generation recipe"), (
        error
    )
    assert f"synthgen evaluate {EVAL}" in error and "recipes/offline-demo/recipe.yaml" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "kind"), [("seeds.yaml", "a seeds file"), ("personas.yaml", "a personas file")]
)
def test_validate_given_seeds_or_personas_says_so(name: str, kind: str) -> None:
    path = SHIPPED_SEEDS / name
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    error = result.stderr.removeprefix("error: ")
    assert error.count("\n") == 1 and f"this is {kind}, not a generation recipe" in error, error
    assert "names it under" in error


# --- run, report, estimate -------------------------------------------------------------------------------


def test_offline_run_then_report_then_resume_guard(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("run", DEMO, "--offline", "--out", out, "--limit", "3")
    assert result.exit_code == 0, result.output
    assert re.search(r"^dialogues: 3 rows from 3 items \(0 failed", result.stdout, re.M), result.stdout
    assert f"wrote {out}" in result.stdout

    assert (out / "README.md").is_file()
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["offline"] is True and run["complete"] is True
    train = sorted((out / "data" / "sft").glob("train-*.parquet"))
    assert train, sorted(p.name for p in out.rglob("*"))
    rows = [r for path in train for r in pq.read_table(path).to_pylist()]
    assert rows and all(r["messages"][0]["role"] == "system" for r in rows)
    assert sum(c["items"] for c in run["steps"].values()) == 6  # --limit 3 for each of the two steps
    for counts in run["steps"].values():  # nothing lost
        assert counts["items"] == counts["ok"] + counts["failed"] + counts["rejected"] + counts["not_started"]

    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    for name, c in run["steps"].items():
        line = (
            f"{name} [{c['generator']} v{c['version']} -> {c['output']}]: {c['items']} items: "
            f"{c['ok']} ok, {c['failed']} failed, {c['rejected']} rejected, {c['not_started']} not started; "
            f"{c['rows']} rows"
        )
        assert line in report.stdout, report.stdout
    assert "offline-demo (offline)" in report.stdout

    # the same RUN_DIR under a changed recipe is refused (exit 2), naming what changed
    changed = demo_copy(tmp_path)
    changed["seed"] = 14
    other = write_recipe(tmp_path / "changed.yaml", changed)
    refused = invoke("run", other, "--offline", "--out", out, "--limit", "3")
    assert refused.exit_code == 2, refused.output
    assert "different recipe" in refused.stderr and "seed" in refused.stderr and "--out" in refused.stderr


def test_report_without_run_json(tmp_path: Path) -> None:
    result = invoke("report", tmp_path)
    assert result.exit_code == 2
    assert "no run.json" in result.stderr and "synthgen run" in result.stderr  # the hint says what to do


def test_estimate_offline_json(tmp_path: Path) -> None:
    """The demo recipe on 12 of its seeds: the estimate simulates every item, and 186 take ~10 s."""
    recipe = write_recipe(tmp_path / "demo.yaml", demo_copy(tmp_path, seeds=12))
    result = invoke("estimate", recipe, "--offline", "--json")
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)
    assert set(estimate["steps"]) == {"dialogues", "prefs"}
    assert estimate["steps"]["dialogues"]["items"] == 12 * 2  # per_seed: 2
    assert estimate["usd"] > 0 and estimate["tokens"] > 0
    for step in estimate["steps"].values():
        assert step["items"] > 0 and step["calls"] > 0 and step["usd"] > 0
        for model, m in step["by_model"].items():  # the table's prices for the real model names
            assert model in ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06")
            prices = price_for(model)
            assert prices is not None
            usd = (m["prompt_tokens"] * prices.input + m["completion_tokens"] * prices.output) / 1e6
            assert m["usd"] == pytest.approx(usd) and m["usd"] > 0
    assert set(estimate["steps"]["dialogues"]["by_model"]) == {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"}
    assert estimate["usd"] == pytest.approx(sum(s["usd"] for s in estimate["steps"].values()))


@pytest.mark.parametrize("value", ["0", "1025", "1000000"])
def test_concurrency_is_bounded_on_the_command_line(tmp_path: Path, value: str) -> None:
    """Before, --concurrency had no upper bound: 1e6 made 2e6 workers (2.45 GB) for a 1-item run."""
    recipe = write_recipe(tmp_path / "demo.yaml", demo_copy(tmp_path, seeds=2))
    result = invoke(
        "run", recipe, "--offline", "--limit", "1", "--concurrency", value, "--out", tmp_path / "run"
    )
    assert result.exit_code == 2, result.output
    assert "--concurrency" in result.stderr and "1<=x<=1024" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_the_command_line_and_the_profile_share_the_concurrency_bound() -> None:
    option = next(p for p in main.commands["run"].params if p.name == "concurrency")
    assert isinstance(option.type, click.IntRange)
    assert option.type.max == MAX_CONCURRENCY == 1024
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 1024"):
        ModelProfile(model="m", max_concurrency=MAX_CONCURRENCY + 1)


# --- configuration mistakes at run time -------------------------------------------------------------------

KEY_ENV = "SYNTHGEN_TEST_KEY"
WRONG_KEY = "sk-wrong-4f9c1e7a2b8d3f60-tail"


def plausible(request: dict[str, Any]) -> str:
    """Schema-valid Spanish replies (the offline provider's), so a finished run has rows."""
    return str(offline_reply(request)["choices"][0]["message"]["content"])


def _online_recipe(tmp_path: Path, base_url: str) -> Path:
    """The demo recipe with every profile on ``base_url`` and its key in ``$SYNTHGEN_TEST_KEY``; no budget,
    one-turn dialogues and two candidates (fewer calls: these tests are about exit codes, not data)."""
    recipe = demo_copy(tmp_path)
    for profile in recipe["models"].values():
        profile.update(base_url=base_url, api_key_env=KEY_ENV, max_attempts=2)
    del recipe["budget"]
    recipe["steps"][0]["config"]["turns"] = [1, 1]
    recipe["steps"][1]["config"]["candidates"] = 2
    return write_recipe(tmp_path / "online.yaml", recipe)


def test_wrong_key_exits_2_naming_the_field_without_the_key(
    tmp_path: Path, hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    out = tmp_path / "run"
    with OpenAIServer(ServerConfig(api_key="sk-right")) as server:
        recipe = _online_recipe(tmp_path, server.url)
        result = invoke("run", recipe, "--out", out, "--limit", "1", "--yes")
        stats = server.stats()
    assert result.exit_code == 2, result.output
    assert "models.student.api_key_env" in result.stderr, result.stderr  # the first call is the student's
    assert "401" in result.stderr and f"${KEY_ENV}" in result.stderr
    assert "Traceback" not in result.output
    assert stats["status"] == {"401": 1}, stats  # one request: a 401 fails fast, it is never retried
    secret = WRONG_KEY.removeprefix("sk-").removesuffix("-tail")
    assert secret not in result.output and secret not in result.stderr
    for path, content in files_under(tmp_path, hermetic).items():  # nor in the journal, state or cache
        assert secret.encode() not in content, path


def test_missing_key_exits_2_before_any_request(tmp_path: Path) -> None:
    recipe = _online_recipe(tmp_path, "http://127.0.0.1:9/v1")  # discard port: nothing may be sent
    result = invoke("run", recipe, "--out", tmp_path / "run", "--limit", "1", "--yes")
    assert result.exit_code == 2, result.output
    assert "models.student.api_key_env" in result.stderr and f"${KEY_ENV} is empty" in result.stderr
    assert "--offline" in result.stderr  # the hint offers the way out


def test_ctrl_c_exits_130_and_the_same_command_resumes(
    tmp_path: Path, hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process gets a real SIGINT mid-run (requests held by the server's latency)."""
    monkeypatch.setenv(KEY_ENV, "sk-loopback")
    out = tmp_path / "run"
    with OpenAIServer(ServerConfig(latency=2.0, responder=plausible)) as server:
        recipe = _online_recipe(tmp_path, server.url)
        args = ["run", str(recipe), "--out", str(out), "--limit", "1", "--yes"]
        proc = subprocess.Popen([*console_script(), *args], env=os.environ.copy(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 60
        while server.stats()["requests"] == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, (stdout, stderr)
        assert "interrupted" in stderr and "resumes when re-run" in stderr
        assert "Traceback" not in stderr
        assert (out / ".synthgen" / "state.json").is_file() and not (out / "run.json").exists()

        server.config.latency = 0.0
        resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["complete"] and run["steps"]["dialogues"]["items"] == 1
