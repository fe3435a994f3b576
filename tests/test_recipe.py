"""``synthgen validate`` refuses a broken recipe with exit 2, says where (file, line, field), writes nothing.

Each broken recipe is a small mutation of one valid recipe written into ``tmp_path``, so a case fails only for
the reason it names. The expected line is looked up in the written file, never hard-coded.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.pipeline.validate import validate_recipe
from synthgen.recipe import load_recipe

SEEDS: dict[str, Any] = {
    "language": "es",
    "seeds": [
        {
            "id": "matricula-plazo",
            "topic": "matricula",
            "question": "¿Cuándo es el plazo de matrícula?",
            "answer": "La matrícula ordinaria se hace en julio en la sede electrónica. "
            "El plazo acaba el 12 de septiembre.",
        },
        {
            "id": "matricula-minimo",
            "topic": "matricula",
            "question": "¿De cuántos créditos me matriculo como mínimo?",
            "answer": "A tiempo completo, de al menos 48 créditos. A tiempo parcial, de 24 a 36 créditos.",
        },
        {
            "id": "matricula-anular",
            "topic": "matricula",
            "question": "¿Puedo anular la matrícula?",
            "answer": "La anulación se pide en la Secretaría antes del 31 de octubre.",
        },
        {
            "id": "certificado-pedir",
            "topic": "certificados",
            "question": "¿Cómo pido un certificado académico?",
            "answer": "El certificado se solicita en la sede electrónica y se emite en diez días hábiles.",
        },
        {
            "id": "certificado-precio",
            "topic": "certificados",
            "question": "¿Cuánto cuesta un certificado académico?",
            "answer": "El certificado académico cuesta 27 euros; las familias numerosas tienen descuento.",
        },
    ],
}
PERSONAS: dict[str, Any] = {
    "personas": [
        {
            "id": "primer-curso",
            "name": "Estudiante de primer curso",
            "situation": "Acaba de llegar a la universidad y no conoce los trámites.",
            "register": "informal",
            "urgency": "media",
        }
    ]
}
BASE: dict[str, Any] = {
    "name": "test-faculty",
    "version": 1,
    "language": "es",
    "seed": 7,
    "seeds": "seeds.yaml",
    "personas": "personas.yaml",
    "system_prompt": "Eres el asistente virtual de la Facultad de Ciencias.",
    "models": {
        "student": {"model": "gpt-4o-mini-2024-07-18", "temperature": 1.0},
        "assistant": {"model": "gpt-4o-2024-08-06", "temperature": 0.7},
        "judge": {"model": "gpt-4o-2024-08-06", "temperature": 0.0},
    },
    "steps": [
        {
            "name": "dialogues",
            "generator": "dialogue",
            "config": {"per_seed": 1, "turns": [1, 2], "student": "student", "assistant": "assistant"},
        },
        {
            "name": "prefs",
            "generator": "preference",
            "from": "dialogues",
            "config": {"candidates": 2, "judge": "judge"},
        },
    ],
    "output": {"test_fraction": 0.2, "license": "cc-by-4.0"},
    "budget": {"max_usd": 5},
}


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line reading exactly ``needle`` (ignoring indentation and a list dash)."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if line.strip().removeprefix("- ") == needle]
    assert len(hits) >= nth, f"{needle!r} not in:\n{text}"
    return hits[nth - 1]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` with a content hash: proof that nothing was written."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def _project(tmp_path: Path) -> Path:
    """A folder with seeds.yaml (5 seeds, 2 topics), personas.yaml and the valid base recipe.yaml."""
    (tmp_path / "seeds.yaml").write_text(_dump(SEEDS), encoding="utf-8")
    (tmp_path / "personas.yaml").write_text(_dump(PERSONAS), encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(_dump(BASE), encoding="utf-8")
    return tmp_path.resolve()  # errors name resolved paths of seeds and prompt files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _project(tmp_path)


# --- the broken recipes ----------------------------------------------------------------------------------
# A mutation edits a deep copy of BASE in place (it may also write files into the project folder), or returns
# the recipe file's whole text when the breakage is below the YAML level.

Mutation = Callable[[dict[str, Any], Path], "str | None"]


@dataclass(frozen=True)
class Broken:
    id: str
    mutate: Mutation
    expect: tuple[str, ...]  # substrings of the error: the field path first, then what it says
    at: tuple[str, int] | int | None = None  # the line the error names: (exact text, occurrence) or a number
    file: str = "recipe.yaml"  # the file the error names


def _set(*path: str | int, value: object) -> Mutation:
    def mutate(recipe: dict[str, Any], root: Path) -> None:
        node: Any = recipe
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _drop(key: str) -> Mutation:
    def mutate(recipe: dict[str, Any], root: Path) -> None:
        del recipe[key]

    return mutate


def _broken_seeds(recipe: dict[str, Any], root: Path) -> None:
    seeds = copy.deepcopy(SEEDS)
    seeds["seeds"][3]["answer"] = ""
    (root / "broken-seeds.yaml").write_text(_dump(seeds), encoding="utf-8")
    recipe["seeds"] = "broken-seeds.yaml"


def _typo_in_step(recipe: dict[str, Any], root: Path) -> None:
    recipe["steps"][1]["form"] = recipe["steps"][1].pop("from")


def _later_step(recipe: dict[str, Any], root: Path) -> None:
    recipe["steps"].reverse()


def _from_prefs(recipe: dict[str, Any], root: Path) -> None:
    step = {"name": "prefs-again", "generator": "preference", "from": "prefs", "config": {"judge": "judge"}}
    recipe["steps"].append(step)


def _duplicate_step(recipe: dict[str, Any], root: Path) -> None:
    recipe["steps"][1]["name"] = "dialogues"
    del recipe["steps"][1]["from"]


def _unknown_placeholder(recipe: dict[str, Any], root: Path) -> None:
    body = "version: 1\n---\nEres $persona_name. Tu duda: $seed_question\n$history\nY $unknown_thing.\n"
    (root / "student.txt").write_text(body, encoding="utf-8")
    recipe["prompts"] = {"student": "student.txt"}


BROKEN = [
    Broken("unknown-generator", _set("steps", 0, "generator", value="dialog"),
           ("steps[0].generator", "unknown generator 'dialog'", "did you mean 'dialogue'?"),
           ("generator: dialog", 1)),
    Broken("unknown-profile", _set("steps", 0, "config", "student", value="studnt"),
           ("steps[0].config.student", "unknown model profile 'studnt'", "did you mean 'student'?"),
           ("student: studnt", 1)),
    Broken("unknown-profile-in-pool", _set("steps", 1, "config", "pool", value=[{"profile": "asistente"}]),
           ("steps[1].config.pool[0].profile", "unknown model profile 'asistente'", "'assistant'?"),
           ("profile: asistente", 1)),
    Broken("missing-seeds-file", _set("seeds", value="nope.yaml"),
           ("seeds", "seeds file not found", "nope.yaml", "relative to the recipe file"),
           ("seeds: nope.yaml", 1)),
    Broken("broken-seed", _broken_seeds, ("seeds[3].answer", "is empty"), ("answer: ''", 1),
           "broken-seeds.yaml"),
    Broken("turns-reversed", _set("steps", 0, "config", "turns", value=[3, 2]),
           ("steps[0].config.turns", "got [3, 2]"), ("turns:", 1)),
    Broken("turns-zero", _set("steps", 0, "config", "turns", value=[0, 2]),
           ("steps[0].config.turns", "got [0, 2]"), ("turns:", 1)),
    Broken("unknown-top-level-key", _set("descripton", value="demo"),
           ("descripton", "Extra inputs are not permitted", "did you mean 'description'?"),
           ("descripton: demo", 1)),
    Broken("unknown-step-key", _typo_in_step,
           ("steps[1].form", "did you mean 'from'?"), ("form: dialogues", 1)),
    Broken("unknown-step-config-key", _set("steps", 0, "config", "per_sed", value=2),
           ("steps[0].config.per_sed", "did you mean 'per_seed'?"), ("per_sed: 2", 1)),
    Broken("unknown-profile-key", _set("models", "judge", "temprature", value=0.1),
           ("models.judge.temprature", "did you mean 'temperature'?"), ("temprature: 0.1", 1)),
    Broken("seed-not-int", _set("seed", value="abc"), ("seed", "valid integer"), ("seed: abc", 1)),
    Broken("steps-not-list", _set("steps", value={}), ("steps", "valid list"), ("steps: {}", 1)),
    Broken("negative-per-seed", _set("steps", 0, "config", "per_seed", value=-1),
           ("steps[0].config.per_seed", "greater than or equal to 1"), ("per_seed: -1", 1)),
    Broken("one-candidate", _set("steps", 1, "config", "candidates", value=1),
           ("steps[1].config.candidates", "greater than or equal to 2"), ("candidates: 1", 1)),
    Broken("test-fraction-above-one", _set("output", "test_fraction", value=1.5),
           ("output.test_fraction", "less than 1"), ("test_fraction: 1.5", 1)),
    Broken("negative-budget", _set("budget", "max_usd", value=-5),
           ("budget.max_usd", "greater than 0"), ("max_usd: -5", 1)),
    Broken("max-concurrency-too-high", _set("models", "judge", "max_concurrency", value=2000),
           ("models.judge.max_concurrency", "less than or equal to 1024", "requests_per_minute"),
           ("max_concurrency: 2000", 1)),
    Broken("infinite-budget", _set("budget", "max_usd", value=float("inf")),
           ("budget.max_usd", "is not a finite number", "leave the key out"), ("max_usd: .inf", 1)),
    Broken("nan-price", _set("models", "judge", "prices", value={"input": float("nan"), "output": 10.0}),
           ("models.judge.prices.input", "is not a finite number"), ("input: .nan", 1)),
    Broken("infinite-margin", _set("steps", 1, "config", "margin", value=float("-inf")),
           ("steps[1].config.margin", "is not a finite number"), ("margin: -.inf", 1)),
    Broken("overflowing-float",
           lambda recipe, root: _dump(recipe).replace("test_fraction: 0.2", "test_fraction: 1e400"),
           ("output.test_fraction", "finite number", "leave the key out"), ("test_fraction: 1e400", 1)),
    Broken("duplicate-step-name", _duplicate_step,
           ("steps[1].name", "duplicate step name 'dialogues'"), ("name: dialogues", 2)),
    Broken("from-unknown-step", _set("steps", 1, "from", value="dialogs"),
           ("steps[1].from", "'dialogs' is not an earlier step"), ("from: dialogs", 1)),
    Broken("from-later-step", _later_step,
           ("steps[0].from", "'dialogues' is not an earlier step"), ("from: dialogues", 1)),
    Broken("from-step-without-dialogues", _from_prefs,
           ("steps[2].from", "'prefs' does not produce dialogues"), ("from: prefs", 1)),
    Broken("bad-license", _set("output", "license", value="cc-by-4"),
           ("output.license", "unknown license id 'cc-by-4'", "did you mean 'cc-by-4.0'?"),
           ("license: cc-by-4", 1)),
    Broken("bad-language", _set("language", value="spa"), ("language", "ISO 639-1"), ("language: spa", 1)),
    Broken("empty-system-prompt", _set("system_prompt", value=""),
           ("system_prompt", "at least 1 character"), ("system_prompt: ''", 1)),
    Broken("missing-name", _drop("name"), ("name", "Field required", "add it"), 1),  # line 1: the mapping
    Broken("missing-models", _drop("models"), ("models", "Field required", "add it"), 1),
    Broken("reasoning-model-temperature",
           _set("models", "judge", value={"model": "o3-mini-2025-01-31", "temperature": 0.0}),
           ("models.judge.temperature", "reasoning model", "remove it"), ("temperature: 0.0", 1)),
    Broken("prompt-override-missing", _set("prompts", value={"student": "nope.txt"}),
           ("prompts.student", "prompt file not found", "nope.txt"), ("student: nope.txt", 1)),
    Broken("prompt-override-for-unused-role", _set("prompts", value={"studnet": "nope.txt"}),
           ("prompts.studnet", "prompt file not found"), ("studnet: nope.txt", 1)),
    Broken("prompt-unknown-placeholder", _unknown_placeholder,
           ("student", "$unknown_thing", "available: "), None, "student.txt"),
    Broken("unknown-persona", _set("steps", 0, "config", "personas", value=["nadie"]),
           ("steps[0].config.personas", "unknown persona id(s): nadie", "primer-curso")),
    Broken("not-a-mapping", lambda recipe, root: "- name: test-faculty\n- seeds: seeds.yaml\n",
           ("a recipe is a YAML mapping", "start from recipes/offline-demo/recipe.yaml"), 1),
    Broken("yaml-syntax-error", lambda recipe, root: "name: x\nmodels: {student: [1, 2}\nsteps: []\n",
           ("not valid YAML",), ("models: {student: [1, 2}", 1)),
    Broken("bad-step-name", _set("steps", 0, "name", value="Dia logues"),
           ("steps[0].name", "lowercase letters"), ("name: Dia logues", 1)),
    Broken("bad-api-key-env", _set("models", "judge", "api_key_env", value="MY-KEY"),
           ("models.judge.api_key_env", "environment variable"), ("api_key_env: MY-KEY", 1)),
    Broken("api-key-in-extra-body",
           _set("models", "judge", "extra_body", value={"api_key": "sk-in-recipe-0042"}),
           ("models.judge.extra_body", "may not carry 'api_key'", "api_key_env"), ("extra_body:", 1)),
]  # fmt: skip


def write_broken(project: Path, case: Broken) -> Path:
    recipe = copy.deepcopy(BASE)
    text = case.mutate(recipe, project)
    path = project / "recipe.yaml"
    path.write_text(text if text is not None else _dump(recipe), encoding="utf-8")
    return path


def expected_prefix(project: Path, case: Broken) -> str:
    """``/abs/path/file:LINE: `` (or ``file: `` when the error has no line)."""
    file = project / case.file
    if case.at is None:
        return f"{file}: "
    line = case.at if isinstance(case.at, int) else line_of(file.read_text(encoding="utf-8"), *case.at)
    return f"{file}:{line}: "


def test_models_refuse_non_finite_numbers_from_python_too() -> None:
    """Recipes built in Python skip the YAML check: the models themselves refuse inf and nan."""
    from synthgen.llm.profile import ModelProfile, Prices
    from synthgen.recipe import Budget, OutputConfig

    for build in (
        lambda: Budget(max_usd=float("inf")),
        lambda: Prices(input=float("nan"), output=1.0),
        lambda: ModelProfile(model="m", timeout=float("inf")),
        lambda: OutputConfig(test_fraction=float("nan")),
    ):
        with pytest.raises(pydantic.ValidationError, match="finite number"):
            build()


def test_enough_kinds_of_broken_recipes() -> None:
    assert len({c.id for c in BROKEN}) == len(BROKEN) >= 24


def test_base_recipe_validates(project: Path, hermetic: Path) -> None:
    before = snapshot(project, hermetic)
    result = CliRunner().invoke(main, ["validate", str(project / "recipe.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {project / 'recipe.yaml'}")
    assert "5 seeds over 2 topics, 1 personas, language es" in result.stdout
    assert "step dialogues: dialogue v1 -> sft, 5 items planned" in result.stdout
    assert "step prefs: preference v1 -> prefs, 5 items planned" in result.stdout
    assert result.stderr == ""
    assert snapshot(project, hermetic) == before


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_broken_recipe_is_refused(project: Path, hermetic: Path, case: Broken) -> None:
    path = write_broken(project, case)
    before = snapshot(project, hermetic)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    error = result.stderr
    assert error.startswith("error: ") and error.count("\n") == 1, error  # one message, one line
    assert error.removeprefix("error: ").startswith(expected_prefix(project, case)), error
    for part in case.expect:
        assert part in error, f"{part!r} not in {error!r}"
    assert "Traceback" not in result.output
    assert "sk-in-recipe-0042" not in result.output  # an error about a secret never repeats it
    assert snapshot(project, hermetic) == before


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("synthgen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "synthgen.cli"]


SUBPROCESS_CASES = ("unknown-generator", "broken-seed")


def test_console_script_exit_codes(tmp_path: Path, hermetic: Path) -> None:
    """The real process: exit status 2 (0 for the base recipe) and the message on stderr, not just what
    CliRunner reports. The processes run side by side: each one spends most of its time importing."""
    recipes: dict[str, tuple[Path, Path]] = {}
    for name in ("base", *SUBPROCESS_CASES):
        (tmp_path / name).mkdir()
        root = _project(tmp_path / name)
        recipes[name] = root, root / "recipe.yaml" if name == "base" else write_broken(root, _case(name))
    before = snapshot(tmp_path, hermetic)
    jobs: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    for name, (root, path) in recipes.items():
        cmd = [*_console_script(), "validate", str(path)]
        jobs[name] = root, subprocess.Popen(cmd, cwd=root, env=os.environ.copy(), text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    for name, (root, proc) in jobs.items():
        stdout, stderr = proc.communicate(timeout=120)
        if name == "base":
            assert proc.returncode == 0, stderr
            assert "step dialogues: dialogue v1" in stdout and "step prefs: preference v1" in stdout
            continue
        case = _case(name)
        assert proc.returncode == 2, (name, stderr)
        assert stdout == ""
        assert stderr.startswith(f"error: {expected_prefix(root, case)}"), stderr
        assert all(part in stderr for part in case.expect), stderr
    assert snapshot(tmp_path, hermetic) == before


def _case(name: str) -> Broken:
    return next(c for c in BROKEN if c.id == name)


# --- YAML below the schema: alias bombs, syntax errors at the line to fix ---------------------------------


def laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs" block of top-level keys: each level aliases the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_it_expands(project: Path, hermetic: Path) -> None:
    """Six levels of nine aliases are 600k values: before, the line-mapping walk expanded all of them.
    (validate's modules are imported at the top of this file: the clock measures the check alone.)"""
    path = project / "recipe.yaml"
    path.write_text(_dump(BASE) + laughs(6), encoding="utf-8")
    before = snapshot(project, hermetic)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["validate", str(path)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    assert elapsed < 1.0, elapsed
    line = path.read_text(encoding="utf-8").splitlines().index(laughs(6).splitlines()[5]) + 1
    assert result.stderr.startswith(f"error: {path}:{line}: "), result.stderr
    assert "aliases expand to more than" in result.stderr and "<<: *defaults" in result.stderr
    assert snapshot(project, hermetic) == before


def test_merge_keys_and_a_few_aliases_still_work(project: Path) -> None:
    text = _dump(BASE).replace(
        "  assistant:\n    model: gpt-4o-2024-08-06\n    temperature: 0.7\n",
        "  assistant: &assistant\n    model: gpt-4o-2024-08-06\n    temperature: 0.7\n",
    )
    text = text.replace(
        "  judge:\n    model: gpt-4o-2024-08-06\n    temperature: 0.0\n",
        "  judge:\n    <<: *assistant\n    temperature: 0.0\n",
    )
    assert "<<: *assistant" in text
    (project / "recipe.yaml").write_text(text, encoding="utf-8")
    assert validate_recipe(project / "recipe.yaml").startswith("ok: ")
    recipe = load_recipe(project / "recipe.yaml")
    assert recipe.models["judge"].model == "gpt-4o-2024-08-06" and recipe.models["judge"].temperature == 0.0


SYNTAX = [
    # (id, recipe text, the line the user must fix, words of the message or hint)
    ("unclosed-double-quote", 'name: x\nsystem_prompt: "Eres el asistente\nseed: 3\nsteps: []\n', 2, "quote"),
    ("unclosed-single-quote", "name: x\nsystem_prompt: 'Eres el asistente\nseed: 3\n", 2, "quote"),
    ("key-without-colon", "name: x\nseed 3\nsteps: []\n", 2, "':'"),
    ("unclosed-brace", "name: x\nmodels: {student: {model: a}\nsteps: []\nseed: 1\n", 2, "'{'"),
    ("unclosed-bracket", "name: x\nseeds: [a.yaml, b.yaml\nseed: 1\n", 2, "'['"),
    ("tab-indentation", "name: x\nmodels:\n\tstudent: {model: a}\n", 3, "spaces"),
    ("bad-indentation", "name: x\nmodels:\n  student: {model: a}\n   judge: {model: b}\n", 4, "indent"),
    ("colon-in-value", "name: x\nsystem_prompt: Hola: soy el asistente\n", 2, "quote"),
]


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_yaml_syntax_error_names_the_line_to_fix(project: Path, text: str, line: int, words: str) -> None:
    path = project / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}:{line}: not valid YAML"), result.stderr
    assert words in result.stderr, result.stderr


def test_run_dirs_of_the_first_release_keep_resuming() -> None:
    """The offline demo's fingerprint as the first release wrote it into `.synthgen/state.json`
    (80e3d43): settings added since (structured_output auto, check_topic) must not change it, or every
    existing RUN_DIR becomes "a different recipe" on upgrade. Update only when a change of prompts or
    generators means old RUN_DIRs must indeed not resume."""
    from synthgen import load_recipe

    demo = Path(__file__).resolve().parents[1] / "recipes" / "offline-demo" / "recipe.yaml"
    legacy = load_recipe(demo).fingerprint(legacy=True)
    assert legacy == "c13d29a0faf52b81e3b9685dc9cf7d8e81dbc4d3c2adfa91a621bd2400933eb9"
