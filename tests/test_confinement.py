"""A shared recipe cannot exfiltrate local files: what it reads stays beside it or its seeds.

Why: a `documents` glob used to reach any readable file (and send it to the recipe's endpoint, and
publish its absolute path); the recipe's endpoints are said aloud before the first paid call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from synthgen import load_recipe
from synthgen.cli import main
from synthgen.errors import RecipeError
from tests.servers.openai_server import OpenAIServer, ServerConfig

SEEDS = (
    "seeds:\n  - {id: s1, topic: prácticas, question: '¿Cuántos ECTS tienen las prácticas?', "
    "answer: 'Las prácticas curriculares tienen 12 ECTS.'}\n"
)
REGULATION = "# Reglamento\n\n## Artículo 1. Objeto\n\nLas prácticas curriculares tienen 12 ECTS.\n"


def faculty(tmp_path: Path, *, documents: str = "docs/*.md", extra: str = "") -> Path:
    folder = tmp_path / "faculty"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "practicas.md").write_text(REGULATION, encoding="utf-8")
    (folder / "seeds.yaml").write_text(SEEDS, encoding="utf-8")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "notas.md").write_text("# Notas privadas\n\nDNI de Ana: ...\n", encoding="utf-8")
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        "name: docs\nseeds: seeds.yaml\nsystem_prompt: Eres el asistente de la Facultad.\n"
        f"models: {{writer: {{model: gpt-4o-2024-08-06}}}}\n{extra}"
        f"steps:\n  - name: new-seeds\n    generator: documents\n"
        f"    config: {{documents: ['{documents}'], profile: writer}}\n",
        encoding="utf-8",
    )
    return recipe


@pytest.mark.parametrize("documents", ["../private/*.md", "../private/notas.md", "../**/*.md", "/etc/*.conf"])
def test_documents_outside_the_recipe_and_seeds_folders_are_refused(tmp_path: Path, documents: str) -> None:
    recipe = faculty(tmp_path, documents=documents)
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert f"{recipe.resolve()}:" in result.output and "steps[0].config.documents" in result.output
    assert "outside the recipe's folder" in result.output and "--allow-outside-paths" in result.output


def test_a_trusted_recipe_may_read_outside_with_the_flag(tmp_path: Path) -> None:
    recipe = faculty(tmp_path, documents="../private/*.md")
    with pytest.raises(RecipeError):
        load_recipe(recipe)
    assert load_recipe(recipe, allow_outside_paths=True).steps[0].config["documents"]
    result = CliRunner().invoke(main, ["validate", str(recipe), "--allow-outside-paths"])
    assert result.exit_code == 0, result.output


def test_a_link_inside_the_folder_is_judged_by_where_it_points(tmp_path: Path) -> None:
    recipe = faculty(tmp_path)
    (recipe.parent / "docs" / "innocent.md").symlink_to(tmp_path / "private" / "notas.md")
    with pytest.raises(RecipeError, match=r"notas\.md, outside"):
        load_recipe(recipe)


def test_personas_and_prompt_overrides_are_confined_too(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "personas.yaml").write_text(
        "personas:\n  - {id: p1, description: estudiante de primer curso}\n", encoding="utf-8"
    )
    recipe = faculty(tmp_path, extra="personas: ../elsewhere/personas.yaml\n")
    with pytest.raises(RecipeError) as refused:
        load_recipe(recipe)
    assert refused.value.field == "personas" and refused.value.line == 5
    recipe.write_text(
        recipe.read_text(encoding="utf-8").replace(
            "personas: ../elsewhere/personas.yaml", "prompts: {faq: ../elsewhere/personas.yaml}"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RecipeError) as prompt:
        load_recipe(recipe)
    assert prompt.value.field == "prompts.faq"


def test_a_run_says_where_a_recipe_sends_requests_before_paying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    with OpenAIServer(ServerConfig()) as server:
        recipe = faculty(tmp_path)
        recipe.write_text(
            recipe.read_text(encoding="utf-8").replace(
                "{writer: {model: gpt-4o-2024-08-06}}",
                f"{{writer: {{model: gpt-4o-2024-08-06, base_url: '{server.url}'}}}}",
            ),
            encoding="utf-8",
        )
        result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run"), "--yes"])
    assert f"note: requests of models.writer go to {server.url}" in result.output
