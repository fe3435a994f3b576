"""The generator registry: entry points from every installed package, and names two packages claim.

Packages are "installed" as ``*.dist-info`` folders on ``sys.path``, exactly what
``importlib.metadata`` reads after ``pip install``; the registry is refreshed around each test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.errors import GeneratorNotFound
from synthgen.generators import registry
from synthgen.generators.dialogue import DialogueGenerator
from tests.conftest import REPO


def install(site: Path, name: str, entries: dict[str, str]) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[synthgen.generators]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh_generators()
    yield tmp_path
    monkeypatch.undo()
    registry.refresh_generators()


def test_builtins_register_through_entry_points() -> None:
    assert registry.get_generator("dialogue") is DialogueGenerator
    assert {"dialogue", "preference", "documents"} <= set(registry.available_generators())
    assert registry.conflicts() == {}


def test_an_unknown_name_suggests_the_closest(site: Path) -> None:
    with pytest.raises(GeneratorNotFound, match="unknown generator 'dialog'") as info:
        registry.get_generator("dialog")
    assert "did you mean 'dialogue'?" in str(info.value)


def test_a_name_two_packages_claim_is_refused_naming_both(site: Path) -> None:
    install(site, "faculty-shadow", {"dialogue": "faculty_shadow:Dialogue", "faq": "faculty_shadow:Faq"})
    registry.refresh_generators()
    with pytest.raises(GeneratorNotFound) as info:
        registry.get_generator("dialogue")
    message = str(info.value)
    assert "registered by 2 installed packages" in message
    assert "faculty-shadow (faculty_shadow:Dialogue)" in message
    assert "synthgen (synthgen.generators.dialogue:DialogueGenerator)" in message
    assert "rename the entry point" in message
    assert set(registry.conflicts()["dialogue"]) == {
        "synthgen (synthgen.generators.dialogue:DialogueGenerator)",
        "faculty-shadow (faculty_shadow:Dialogue)",
    }
    assert "faq" not in registry.conflicts()


def test_the_cli_lists_a_conflict_and_a_recipe_using_it_exits_2(site: Path) -> None:
    install(site, "faculty-shadow", {"dialogue": "faculty_shadow:Dialogue"})
    registry.refresh_generators()
    listed = CliRunner().invoke(main, ["generators"])
    assert listed.exit_code == 0
    assert "preference" in listed.stdout and "CONFLICT" not in listed.stdout
    assert "dialogue       CONFLICT: registered by" in listed.stderr
    checked = CliRunner().invoke(main, ["validate", str(REPO / "recipes" / "offline-demo" / "recipe.yaml")])
    assert checked.exit_code == 2, checked.output
    assert "generator 'dialogue' is registered by 2 installed packages" in checked.output


def test_one_package_seen_twice_on_the_path_is_not_a_conflict(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other-site")
    install(site, "faculty-faq", {"faq": "faculty_faq:Faq"})
    install(other, "faculty-faq", {"faq": "faculty_faq:Faq"})  # e.g. an editable install and a copy
    sys.path.insert(0, str(other))
    try:
        registry.refresh_generators()
        assert "faq" not in registry.conflicts()
        with pytest.raises(ModuleNotFoundError, match="faculty_faq"):
            registry.get_generator("faq")  # one registration: loading it is attempted, not refused
    finally:
        sys.path.remove(str(other))
