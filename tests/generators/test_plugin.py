"""The example plugin in docs/example-plugin, installed for real, is a first-class generator.

pip builds and installs the package into a private directory (offline: no index, no build isolation);
synthgen then runs in a subprocess with that directory on PYTHONPATH, so ``importlib.metadata`` finds
the plugin's entry point exactly as after ``pip install synthgen-faq``, while this test process's
registry never sees it (no stray plugin for the other tests).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO

PLUGIN = REPO / "docs" / "example-plugin"
SYSTEM_PROMPT = "Eres el asistente virtual de la Facultad de Ciencias. Respondes con precisión y amabilidad."
AUDIENCE = "familias de estudiantes"
_SEED_ROWS = [
    ("mat-01", "matricula", "¿Cuándo es el plazo de matrícula para estudiantes de continuación?",
     "Los estudiantes de continuación se matriculan en la sede electrónica del 28 de julio al 12 de "
     "septiembre. Cada estudiante tiene una cita de matrícula asignada según sus créditos."),
    ("mat-02", "matricula", "Trabajo por las tardes. ¿Puedo matricularme a tiempo parcial?",
     "La dedicación a tiempo parcial se solicita al formalizar la matrícula y hasta el 15 de octubre, "
     "acreditando la actividad laboral con un contrato."),
    ("bib-01", "biblioteca", "¿Qué horario tiene la biblioteca en época de exámenes?",
     "En época de exámenes la Biblioteca de Ciencias abre de lunes a domingo de 8:00 a 2:00, con préstamo "
     "de portátiles en el mostrador."),
    ("bib-02", "biblioteca", "¿Cuántos libros me puedo llevar en préstamo?",
     "Los estudiantes de grado pueden tener en préstamo hasta 8 documentos durante 15 días, renovables dos "
     "veces desde el catálogo."),
]  # fmt: skip
SEEDS = [{"id": i, "topic": t, "question": q, "answer": a} for i, t, q, a in _SEED_ROWS]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin, built and installed by pip into a private target directory."""
    # No index and no build isolation: pip builds with this venv's setuptools (>= 70.1 has bdist_wheel).
    assert importlib.util.find_spec("setuptools"), (
        "the plugin is built offline: pip install 'setuptools>=70.1'"
    )
    root = tmp_path_factory.mktemp("plugin")
    # Build from a copy: pip builds local projects in place, and build/ or *.egg-info must not land in docs/.
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    source = shutil.copytree(PLUGIN, root / "src", ignore=skip)
    target = root / "site"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir"]
    command = [sys.executable, "-m", "pip", "install", *offline, "--disable-pip-version-check", "--target"]
    command += [str(target), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(target.glob("synthgen_faq-*.dist-info/entry_points.txt")), "no entry points installed"
    assert (target / "synthgen_faq" / "prompts" / "es" / "faq.txt").is_file(), (
        "package data missing from the wheel"
    )
    return target


def python(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with the plugin's install directory on the path, as after a normal install."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "PYTHONIOENCODING": "utf-8"}
    command = [sys.executable, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def synthgen(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return python(site, "-m", "synthgen.cli", *args, cwd=cwd)


def write_recipe(directory: Path, generator: str = "faq", prompts: dict[str, str] | None = None) -> Path:
    (directory / "seeds.yaml").write_text(yaml.safe_dump(SEEDS, allow_unicode=True), encoding="utf-8")
    recipe = {
        "name": "faq-plugin-test", "language": "es", "seed": 7, "seeds": "seeds.yaml",
        "system_prompt": SYSTEM_PROMPT, "models": {"assistant": {"model": "gpt-4o-mini"}},
        "steps": [{"name": "faq", "generator": generator, "config": {"audience": AUDIENCE, "per_seed": 1}}],
        "output": {"test_fraction": 0.0},
    }  # fmt: skip
    if prompts:
        recipe["prompts"] = prompts
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def test_installed_plugin_is_listed(site: Path, tmp_path: Path) -> None:
    done = synthgen(site, "generators", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines() if line.strip()}
    assert listed.get("faq") == ["v1", "sft"], done.stdout
    assert "dialogue" in listed  # built-ins come through the same door


def test_offline_run_writes_faq_rows(site: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    done = synthgen(site, "run", str(recipe), "--offline", "--out", str(out), "--limit", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    counts = json.loads((out / "run.json").read_text())["steps"]["faq"]
    assert (counts["generator"], counts["version"], counts["items"]) == ("faq", "1", 3)
    assert (counts["failed"], counts["rejected"]) == (0, 0), counts
    files = sorted((out / "data" / "sft").glob("*.parquet"))
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    assert len(rows) == counts["rows"] == 3

    seeds = {s["id"]: s for s in SEEDS}
    for row in rows:
        seed = seeds[row["seed_ids"][0]]
        system, user, assistant = row["messages"]
        assert row["generator"] == "faq"
        assert (row["topic"], row["persona"]) == (seed["topic"], AUDIENCE)
        # closed-book: the published system turn is the deployment prompt, without the facts
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert user == {"role": "user", "content": seed["question"]}
        assert row["prompt_id"] == hashlib.sha256(seed["question"].encode()).hexdigest()
        # the offline provider answered extractively from the <facts> block: the seed's own answer
        assert assistant["role"] == "assistant"
        assert words(assistant["content"]) <= words(seed["answer"]), assistant["content"]
    assert sorted(r["seed_ids"][0] for r in rows) == ["bib-01", "mat-01", "mat-02"]


def test_the_plugins_template_is_recorded_and_a_recipe_can_override_it(site: Path, tmp_path: Path) -> None:
    shipped = (PLUGIN / "synthgen_faq" / "prompts" / "es" / "faq.txt").read_text(encoding="utf-8")
    plain = tmp_path / "plain"
    plain.mkdir()
    done = synthgen(
        site, "run", str(write_recipe(plain)), "--offline", "--out", str(plain / "run"), cwd=plain
    )
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = json.loads((plain / "run" / "run.json").read_text())["prompts"]["faq"]
    body = shipped.partition("\n---\n")[2].strip() + "\n"
    assert recorded == {
        "version": 1,
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
        "language": "es",
        "source": "synthgen_faq/prompts/es/faq.txt",
    }

    own = tmp_path / "own"
    own.mkdir()
    (own / "faq.txt").write_text(
        "version: 7\n---\n$system_prompt\nPara $audience, $style, en $language.\n$facts\n", encoding="utf-8"
    )
    recipe = write_recipe(own, prompts={"faq": "faq.txt"})
    done = synthgen(site, "run", str(recipe), "--offline", "--out", str(own / "run"), cwd=own)
    assert done.returncode == 0, done.stdout + done.stderr
    run_json = json.loads((own / "run" / "run.json").read_text())
    assert run_json["prompts"]["faq"]["version"] == 7
    assert run_json["prompts"]["faq"]["source"] == str((own / "faq.txt").resolve())
    assert run_json["fingerprint"] != json.loads((plain / "run" / "run.json").read_text())["fingerprint"]

    (own / "faq.txt").write_text("version: 8\n---\nPara $audiencia.\n", encoding="utf-8")
    done = synthgen(site, "validate", str(recipe), cwd=own)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "audiencia" in done.stderr and "faq" in done.stderr


def test_misspelled_generator_suggests_faq(site: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, generator="faqq")
    done = synthgen(site, "validate", str(recipe), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did you mean 'faq'" in done.stderr
    assert "steps[0].generator" in done.stderr


def test_plugin_own_offline_tests_pass(site: Path, tmp_path: Path) -> None:
    """The guide's testing recipe is real: the plugin's tests pass against the installed package."""
    tests = shutil.copytree(
        PLUGIN / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = python(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout
