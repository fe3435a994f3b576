"""Issue 11, the acceptance corpus: bad input gets a clear error naming the file, the line and the field
with the fix, exit code 2, and nothing half written.

Each case breaks one thing in a copy of the shipped offline demo (recipe, eval recipe, seeds, personas)
or on the command line, runs the real CLI on it (click's CliRunner; a subprocess under a 1 GiB address
space limit for the YAML alias bombs) and checks the contract: exit 2 within 5 s, one message that
starts ``file:line: field:`` (the line where one exists) and ends with a hint in parentheses, and not one
file written, changed or removed under the project, the working directory or SYNTHGEN_HOME. The expected
line is looked up in the file the case wrote, never hard-coded.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

# Every command's modules up front (the CLI imports them lazily): the clock below times the checks alone.
import synthgen.evaluation.evaluator
import synthgen.pipeline.estimate
import synthgen.pipeline.runner
import synthgen.pipeline.scaffold
import synthgen.pipeline.validate  # noqa: F401
from synthgen.cli import main
from tests.generators.test_documents import AES_256, _pdf

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "offline-demo"
SHIPPED = REPO / "seeds" / "faculty-sciences-es"
GIB = 1 << 30
SECONDS = 5.0

Setup = Callable[[Path], Sequence[str | Path]]


def project(root: Path) -> Path:
    """The offline demo, self-contained under ``root``: recipe.yaml, eval.yaml, seeds/ and question files."""
    (root / "seeds").mkdir()
    for name in ("seeds.yaml", "personas.yaml"):
        shutil.copy(SHIPPED / name, root / "seeds" / name)
    for name in ("out_of_scope.txt", "real_queries.csv"):
        shutil.copy(DEMO / name, root / name)
    recipe = (DEMO / "recipe.yaml").read_text(encoding="utf-8")
    recipe = recipe.replace("../../seeds/faculty-sciences-es/", "seeds/")
    (root / "recipe.yaml").write_text(recipe, encoding="utf-8")
    evaluation = (DEMO / "eval.yaml").read_text(encoding="utf-8").replace("../../runs/", "runs/")
    (root / "eval.yaml").write_text(evaluation, encoding="utf-8")
    return root


# --- how a case breaks the project and which command it runs -----------------------------------------------


def run(root: Path) -> list[str | Path]:
    return ["run", root / "recipe.yaml", "--offline", "--out", root / "out"]


def evaluate(root: Path) -> list[str | Path]:
    return ["evaluate", root / "eval.yaml", "--offline", "--out", root / "eval-out"]


def text(name: str, old: str, new: str, command: Setup = run) -> Setup:
    """Replace ``old`` (which must occur) by ``new`` in the project's file ``name``."""

    def setup(root: Path) -> Sequence[str | Path]:
        path = root / name
        content = path.read_text(encoding="utf-8")
        assert old in content, (name, old)
        path.write_text(content.replace(old, new, 1), encoding="utf-8")
        return command(root)

    return setup


def data(name: str, edit: Callable[[Any], None], command: Setup = run) -> Setup:
    """Load the project's YAML file ``name``, ``edit`` it in place and write it back."""

    def setup(root: Path) -> Sequence[str | Path]:
        path = root / name
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(loaded)
        path.write_text(
            yaml.safe_dump(loaded, sort_keys=False, allow_unicode=True, width=200), encoding="utf-8"
        )
        return command(root)

    return setup


def put(*path: str | int, value: Any) -> Callable[[Any], None]:
    def edit(node: Any) -> None:
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def drop(*path: str | int) -> Callable[[Any], None]:
    def edit(node: Any) -> None:
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def seeds_file(name: str, content: str | bytes, command: Setup = run) -> Setup:
    """Write seeds/``name`` and point the recipe's ``seeds:`` at it."""

    def setup(root: Path) -> Sequence[str | Path]:
        path = root / "seeds" / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return text("recipe.yaml", "seeds: seeds/seeds.yaml", f"seeds: seeds/{name}", command)(root)

    return setup


def personas_file(name: str, content: str | bytes) -> Setup:
    def setup(root: Path) -> Sequence[str | Path]:
        (root / "seeds" / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return text("recipe.yaml", "personas: seeds/personas.yaml", f"personas: seeds/{name}")(root)

    return setup


def documents_step(pattern: str, files: dict[str, bytes]) -> Setup:
    """A documents step first in the recipe, reading ``pattern``; ``files`` are written under the project."""

    def setup(root: Path) -> Sequence[str | Path]:
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        step = f"  - name: documents\n    generator: documents\n    config: {{documents: {pattern}}}\n"
        return text("recipe.yaml", "steps:\n", "steps:\n" + step)(root)

    return setup


def whole(name: str, content: str | bytes | Callable[[str], str | bytes], command: Setup = run) -> Setup:
    """Write the project's file ``name`` anew: ``content``, or ``content(current text)``."""

    def setup(root: Path) -> Sequence[str | Path]:
        path = root / name
        new = content(path.read_text(encoding="utf-8")) if callable(content) else content
        path.write_bytes(new.encode("utf-8") if isinstance(new, str) else new)
        return command(root)

    return setup


def both(*setups: Setup) -> Setup:
    """Apply several edits; the last one's command runs."""

    def setup(root: Path) -> Sequence[str | Path]:
        args: Sequence[str | Path] = []
        for one in setups:
            args = one(root)
        return args

    return setup


def cli(*args: str) -> Setup:
    return lambda root: [a.replace("{root}", str(root)) for a in args]


def laughs(levels: int, width: int = 9, indent: str = "") -> str:
    """A "billion laughs" block: each level aliases the previous one ``width`` times."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"{indent}l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_laughs(levels: int) -> str:
    """The same bomb made of ``<<`` merge keys, the form a recipe's anchors usually take."""
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}"]
    for n in range(1, levels):
        keys = ", ".join(f"k{k}: *m{n - 1}" for k in range(9))
        lines.append(f"m{n}: &m{n} {{{keys}}}")
    return "\n".join(lines) + "\n"


SEED = "  - id: {id}\n    topic: matricula\n    question: {question}\n    answer: {answer}\n"
GOOD_SEED = SEED.format(id="s1", question="¿Cuándo me matriculo?", answer="En julio, en la sede electrónica.")
CSV_HEADER = "id,topic,question,answer\n"
JSON_SEED = '{"id": "s1", "topic": "matricula", "question": "¿Cuándo?", "answer": "En julio."}\n'
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


# --- the corpus -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    setup: Setup
    file: str | None  # the file the message names, relative to the project; None: a command-line option
    at: str | int | None  # its line: the first line holding this text, a number, or None (no line exists)
    field: str | None  # the field (or option) named
    words: tuple[str, ...] = ()  # in the message or its hint
    bomb: bool = False  # run in a subprocess under a 1 GiB address-space limit


CORPUS = [
    # -- recipes: YAML below the schema
    Bad("recipe-alias-bomb", text("recipe.yaml", "output:", laughs(9) + "output:"), "recipe.yaml", "l5:", None,
        ("aliases expand to more than", "<<: *defaults"), bomb=True),
    Bad("recipe-merge-key-bomb", text("recipe.yaml", "output:", merge_laughs(9) + "output:"), "recipe.yaml",
        "m4:", None, ("aliases expand to more than",), bomb=True),
    Bad("recipe-unclosed-quote", text("recipe.yaml", "description: Demo", 'description: "Demo'), "recipe.yaml",
        "description:", None, ("quote opened here is never closed",)),
    Bad("recipe-key-without-colon", text("recipe.yaml", "seed: 13", "seed 13"), "recipe.yaml", "seed 13", None,
        ("no 'key: value' colon",)),
    Bad("recipe-tab-indentation", text("recipe.yaml", "  student:", "\tstudent:"), "recipe.yaml", "\tstudent:",
        None, ("tab", "spaces")),
    Bad("recipe-unclosed-brace", text("recipe.yaml", "temperature: 1.0}", "temperature: 1.0"), "recipe.yaml",
        "student:", None, ("'{' opened here is not closed",)),
    Bad("recipe-bad-indentation", text("recipe.yaml", "    generator: dialogue", "     generator: dialogue"),
        "recipe.yaml", "generator: dialogue", None, ("indentation",)),
    Bad("recipe-duplicate-key", text("recipe.yaml", "seed: 13\n", "seed: 13\nseed: 14\n"), "recipe.yaml",
        "seed: 14", None, ("duplicate key 'seed'", "keep one")),
    Bad("recipe-empty-file", whole("recipe.yaml", ""), "recipe.yaml", 1, None, ("is empty",)),
    Bad("recipe-is-a-list", whole("recipe.yaml", "- name: offline-demo\n- seeds: seeds/seeds.yaml\n"),
        "recipe.yaml", 1, None, ("a recipe is a YAML mapping",)),
    Bad("recipe-not-utf8", whole("recipe.yaml", lambda t: t.encode("cp1252")), "recipe.yaml", "Respondes con precisi",
        None, ("is not UTF-8: byte 0xf3 at column 78", "save the file as UTF-8")),
    Bad("recipe-utf16", whole("recipe.yaml", lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le")), "recipe.yaml",
        1, None, ("UTF-16",)),
    Bad("recipe-binary", whole("recipe.yaml", PNG), "recipe.yaml", 1, None, ("byte 0x89 at column 1",)),
    Bad("recipe-bom-then-typo", whole("recipe.yaml", lambda t: codecs.BOM_UTF8 + t.replace("seed: 13", "sed: 13")
        .encode()), "recipe.yaml", "sed: 13", "sed", ("did you mean 'seed'?",)),
    # -- recipes: the schema
    Bad("recipe-unknown-key", text("recipe.yaml", "description:", "descripton:"), "recipe.yaml", "descripton:",
        "descripton", ("did you mean 'description'?",)),
    Bad("recipe-unknown-step-key", text("recipe.yaml", "    generator: preference", "    genrator: preference"),
        "recipe.yaml", "genrator: preference", "steps[1].genrator", ("did you mean 'generator'?",)),
    Bad("recipe-unknown-profile-key", text("recipe.yaml", "temperature: 0.0}", "temprature: 0.0}"),
        "recipe.yaml", "temprature", "models.judge.temprature", ("did you mean 'temperature'?",)),
    Bad("recipe-seed-not-a-number", text("recipe.yaml", "seed: 13", "seed: trece"), "recipe.yaml", "seed: trece",
        "seed", ("valid integer",)),
    Bad("recipe-steps-not-a-list", data("recipe.yaml", put("steps", value={"name": "x"})), "recipe.yaml",
        "steps:", "steps", ("valid list",)),
    Bad("recipe-missing-system-prompt", data("recipe.yaml", drop("system_prompt")), "recipe.yaml", 1,
        "system_prompt", ("Field required", "add it")),
    Bad("recipe-missing-models", data("recipe.yaml", drop("models")), "recipe.yaml", 1, "models",
        ("Field required",)),
    Bad("recipe-no-seeds-files", data("recipe.yaml", put("seeds", value=[])), "recipe.yaml", "seeds: []", "seeds",
        ("at least 1",)),
    Bad("recipe-unknown-generator", text("recipe.yaml", "generator: dialogue", "generator: dialog"),
        "recipe.yaml", "generator: dialog", "steps[0].generator", ("unknown generator 'dialog'", "'dialogue'")),
    Bad("recipe-unknown-profile", text("recipe.yaml", "student: student,", "student: studnt,"), "recipe.yaml",
        "student: studnt", "steps[0].config.student", ("unknown model profile 'studnt'", "'student'")),
    Bad("recipe-from-a-later-step", data("recipe.yaml", lambda r: r["steps"].reverse()), "recipe.yaml",
        "from: dialogues", "steps[0].from", ("not an earlier step",)),
    Bad("recipe-from-an-unknown-step", text("recipe.yaml", "from: dialogues", "from: dialogs"), "recipe.yaml",
        "from: dialogs", "steps[1].from", ("'dialogs' is not an earlier step",)),
    Bad("recipe-duplicate-step-name", text("recipe.yaml", "name: prefs", "name: dialogues"), "recipe.yaml",
        "name: dialogues\n    generator: preference", "steps[1].name", ("duplicate step name",)),
    Bad("recipe-negative-per-seed", text("recipe.yaml", "per_seed: 2", "per_seed: -2"), "recipe.yaml",
        "per_seed: -2", "steps[0].config.per_seed", ("greater than or equal to 1",)),
    Bad("recipe-zero-candidates", text("recipe.yaml", "candidates: 4", "candidates: 0"), "recipe.yaml",
        "candidates: 0", "steps[1].config.candidates", ("greater than or equal to 2",)),
    Bad("recipe-test-fraction-above-one", text("recipe.yaml", "test_fraction: 0.1", "test_fraction: 1.5"),
        "recipe.yaml", "test_fraction: 1.5", "output.test_fraction", ("less than 1",)),
    Bad("recipe-zero-budget", text("recipe.yaml", "max_usd: 1", "max_usd: 0"), "recipe.yaml", "max_usd: 0",
        "budget.max_usd", ("greater than 0",)),
    Bad("recipe-infinite-budget", text("recipe.yaml", "max_usd: 1", "max_usd: .inf"), "recipe.yaml",
        "max_usd: .inf", "budget.max_usd", ("not a finite number", "leave the key out")),
    Bad("recipe-nan-price", text("recipe.yaml", "temperature: 0.0}", "temperature: 0.0, prices: {input: .nan, "
        "output: 1}}"), "recipe.yaml", "judge:", "models.judge.prices.input", ("not a finite number",)),
    Bad("recipe-max-concurrency-too-high", text("recipe.yaml", "temperature: 0.0}", "temperature: 0.0, "
        "max_concurrency: 1000000}"), "recipe.yaml", "judge:", "models.judge.max_concurrency",
        ("less than or equal to 1024", "requests_per_minute")),
    Bad("recipe-bad-language", text("recipe.yaml", "language: es", "language: spa"), "recipe.yaml",
        "language: spa", "language", ("ISO 639-1",)),
    Bad("recipe-bad-license", text("recipe.yaml", "license: cc-by-4.0", "license: cc-by-4"), "recipe.yaml",
        "license: cc-by-4", "output.license", ("unknown license id 'cc-by-4'", "'cc-by-4.0'")),
    Bad("recipe-reasoning-model-temperature", text("recipe.yaml", "judge:     {model: gpt-4o-2024-08-06",
        "judge:     {model: o3-mini-2025-01-31"), "recipe.yaml", "judge:", "models.judge.temperature",
        ("reasoning model", "remove it")),
    Bad("recipe-api-key-env-with-dash", text("recipe.yaml", "temperature: 0.0}", "temperature: 0.0, "
        "api_key_env: MY-KEY}"), "recipe.yaml", "judge:", "models.judge.api_key_env", ("environment variable",)),
    Bad("recipe-missing-seeds-file", text("recipe.yaml", "seeds: seeds/seeds.yaml", "seeds: seeds/semillas.yaml"),
        "recipe.yaml", "seeds: seeds/semillas.yaml", "seeds", ("not found", "relative to the recipe file")),
    Bad("recipe-seeds-is-a-directory", text("recipe.yaml", "seeds: seeds/seeds.yaml", "seeds: seeds"),
        "recipe.yaml", "seeds: seeds", "seeds", ("is a directory",)),
    Bad("recipe-missing-personas-file", text("recipe.yaml", "personas: seeds/personas.yaml",
        "personas: seeds/perfiles.yaml"), "recipe.yaml", "personas:", "personas", ("not found",)),
    Bad("recipe-missing-prompt-file", text("recipe.yaml", "budget:", "prompts: {student: student.txt}\nbudget:"),
        "recipe.yaml", "prompts:", "prompts.student", ("prompt file not found",)),
    Bad("recipe-is-an-eval-recipe", lambda root: ["validate", root / "eval.yaml"], "eval.yaml", "candidates:",
        "candidates", ("this is an eval recipe", "synthgen evaluate")),
    Bad("recipe-is-a-seeds-file", lambda root: ["run", root / "seeds" / "seeds.yaml", "--offline", "--out",
        root / "out"], "seeds/seeds.yaml", "seeds:", "seeds", ("this is a seeds file",)),
    Bad("recipe-missing", lambda root: ["validate", root / "receta.yaml"], "receta.yaml", None, None,
        ("recipe file not found",)),
    # -- documents named by a recipe step
    Bad("documents-glob-matches-nothing", documents_step("docs/*.pdf", {}), "recipe.yaml", "documents:",
        "steps[0].config.documents", ("matches no document",)),
    Bad("documents-missing-file", documents_step("docs/reglamento.md", {}), "recipe.yaml", "documents:",
        "steps[0].config.documents", ("not found",)),
    Bad("documents-unsupported-type", documents_step("docs/reglamento.docx", {"docs/reglamento.docx": b"PK\x03"}),
        "docs/reglamento.docx", None, "steps[0].config.documents", ("unsupported document type '.docx'",)),
    Bad("documents-encrypted-pdf", documents_step("docs/*.pdf", {"docs/protegido.pdf": _pdf(["Artículo 1."],
        encrypt=AES_256)}), "docs/protegido.pdf", None, "steps[0].config.documents",
        ("PDF is encrypted", "unencrypted copy")),
    Bad("documents-empty", documents_step("docs/*.md", {"docs/vacio.md": b"\n\n"}), "docs/vacio.md", None,
        "steps[0].config.documents", ("document is empty",)),
    Bad("documents-binary-as-text", documents_step("docs/*.txt", {"docs/datos.txt": b"Art. 1\n\x00\x01\x02"}),
        "docs/datos.txt", 2, "steps[0].config.documents", ("NUL character",)),
    # -- seeds files
    Bad("seeds-alias-bomb-in-a-seed", seeds_file("bomb.yaml", laughs(9) + "seeds:\n" + GOOD_SEED.rstrip("\n")
        + "\n    tags: *l8\n"), "seeds/bomb.yaml", "l5:", None, ("aliases expand to more than",), bomb=True),
    Bad("seeds-empty-yaml", seeds_file("vacio.yaml", ""), "seeds/vacio.yaml", 1, None, ("is empty",)),
    Bad("seeds-empty-list", seeds_file("vacio.yaml", "seeds: []\n"), "seeds/vacio.yaml", 1, "seeds",
        ("has no seeds",)),
    Bad("seeds-duplicate-id", seeds_file("dup.yaml", "seeds:\n" + GOOD_SEED + GOOD_SEED), "seeds/dup.yaml", 6,
        "seeds[1].id", ("duplicate id 's1'", "first defined at line 2")),
    Bad("seeds-duplicate-id-across-files", text("recipe.yaml", "seeds: seeds/seeds.yaml",
        "seeds: [seeds/seeds.yaml, seeds/seeds.yaml]"), "seeds/seeds.yaml", "- id: matricula-plazo-continuacion",
        "seeds[0].id", ("duplicate id", "unique across")),
    Bad("seeds-missing-answer", seeds_file("s.yaml", "seeds:\n  - id: s1\n    topic: t\n    question: q\n"),
        "seeds/s.yaml", 2, "seeds[0].answer", ("is required",)),
    Bad("seeds-answer-is-a-list", seeds_file("s.yaml", "seeds:\n" + GOOD_SEED.replace("answer: En julio, en la "
        "sede electrónica.", "answer: [julio, agosto]")), "seeds/s.yaml", 5, "seeds[0].answer",
        ("must be text, not a list",)),
    Bad("seeds-unknown-field", seeds_file("s.yaml", "seeds:\n" + GOOD_SEED.replace("answer:", "anwser:")),
        "seeds/s.yaml", 5, "seeds[0].anwser", ("did you mean 'answer'?",)),
    Bad("seeds-bad-language", seeds_file("s.yaml", "seeds:\n" + GOOD_SEED + "    language: spanish\n"),
        "seeds/s.yaml", 6, "seeds[0].language", ("ISO 639-1",)),
    Bad("seeds-zero-width-question", seeds_file("s.yaml", "seeds:\n" + SEED.format(id="s1", question='"\\u200b"',
        answer="En julio.")), "seeds/s.yaml", 4, "seeds[0].question", ("only invisible characters", "U+200B")),
    Bad("seeds-nul-escape", seeds_file("s.yaml", "seeds:\n" + SEED.format(id="s1", question='"\\0"', answer="x")),
        "seeds/s.yaml", 4, "seeds[0].question", ("control character U+0000",)),
    Bad("seeds-raw-nul-byte", seeds_file("s.yaml", ("seeds:\n" + GOOD_SEED).encode().replace(b"julio", b"ju\x00")),
        "seeds/s.yaml", 5, None, ("NUL character (U+0000) at column 18",)),
    Bad("seeds-placeholder-answer", seeds_file("s.yaml", "seeds:\n" + SEED.format(id="s1", question="¿Cuándo?",
        answer="En julio. Sustituye este texto por la respuesta real de tu facultad.")), "seeds/s.yaml", 5,
        "seeds[0].answer", ("placeholder text of `synthgen init`",)),
    Bad("seeds-binary-file", seeds_file("s.yaml", PNG), "seeds/s.yaml", 1, None, ("is not UTF-8",)),
    Bad("seeds-unsupported-extension", seeds_file("s.txt", "id: a\n"), "seeds/s.txt", None, None,
        ("unsupported file type '.txt'", ".csv, .jsonl, .yaml")),
    Bad("seeds-jsonl-invalid-line", seeds_file("s.jsonl", JSON_SEED + '{"id": "s2",}\n'), "seeds/s.jsonl", 2,
        None, ("invalid JSON",)),
    Bad("seeds-jsonl-not-an-object", seeds_file("s.jsonl", JSON_SEED + '["s2"]\n'), "seeds/s.jsonl", 2, None,
        ("must be a JSON object, not a list",)),
    Bad("seeds-jsonl-zero-width-topic", seeds_file("s.jsonl", JSON_SEED.replace('"matricula"', '"\\u200b\\u2060"')),
        "seeds/s.jsonl", 1, "topic", ("only invisible characters",)),
    Bad("seeds-jsonl-nul-escape", seeds_file("s.jsonl", JSON_SEED.replace("En julio.", "En julio.\\u0000")),
        "seeds/s.jsonl", 1, "answer", ("control character U+0000",)),
    Bad("seeds-jsonl-empty", seeds_file("s.jsonl", "\n\n"), "seeds/s.jsonl", 1, None, ("no seeds",)),
    Bad("seeds-csv-missing-column", seeds_file("s.csv", "id,topic,question\ns1,t,q\n"), "seeds/s.csv", 1, "answer",
        ("missing column",)),
    Bad("seeds-csv-unknown-column", seeds_file("s.csv", "id,topic,question,anwser\ns1,t,q,r\n"), "seeds/s.csv", 1,
        "anwser", ("did you mean 'answer'?",)),
    Bad("seeds-csv-bad-encoding", seeds_file("s.csv", CSV_HEADER.encode() + "s1,t,¿Qué?,sí\n".encode("cp1252")
        + b"s2,t,q,\x81\n"), "seeds/s.csv", 3, None, ("neither UTF-8 nor Windows-1252", "byte 0x81 at column 8")),
    Bad("seeds-csv-bom-and-empty-answer", seeds_file("s.csv", codecs.BOM_UTF8 + (CSV_HEADER + "s1,t,q,r\ns2,t,q,"
        "\n").encode()), "seeds/s.csv", 3, "answer", ("is empty", "write the answer")),
    Bad("seeds-csv-unterminated-quote", seeds_file("s.csv", CSV_HEADER + 's1,t,"q,r\ns2,t,q,r\n'), "seeds/s.csv",
        2, None, ("quoting",)),
    Bad("seeds-csv-zero-width-answer", seeds_file("s.csv", CSV_HEADER + "s1,t,q,\u200b\u200c\n"), "seeds/s.csv", 2,
        "answer", ("only invisible characters",)),
    Bad("seeds-csv-control-character", seeds_file("s.csv", CSV_HEADER + "s1,t,q\x07,r\n"), "seeds/s.csv", 2,
        "question", ("control character U+0007",)),
    Bad("seeds-csv-utf16", seeds_file("s.csv", codecs.BOM_UTF16_LE + (CSV_HEADER + "s1,t,q,r\n").encode(
        "utf-16-le")), "seeds/s.csv", 1, None, ("UTF-16",)),
    Bad("seeds-csv-header-only", seeds_file("s.csv", CSV_HEADER), "seeds/s.csv", 1, None, ("only a header row",)),
    # -- personas
    Bad("personas-alias-bomb", personas_file("p.yaml", "personas:\n  - {id: a, name: n, situation: s}\n"
        + laughs(9)), "seeds/p.yaml", "l5:", None, ("aliases expand to more than",), bomb=True),
    Bad("personas-broken-yaml", personas_file("p.yaml", "personas:\n  - id: a\n    name: 'Ana\n"), "seeds/p.yaml", 3,
        None, ("quote opened here is never closed",)),
    Bad("personas-bad-register", personas_file("p.yaml", "personas:\n  - {id: a, name: n, situation: s, "
        "register: casual}\n"), "seeds/p.yaml", 2, "personas[0].register", ("'casual' is not allowed",)),
    Bad("personas-duplicate-id", personas_file("p.yaml", "personas:\n  - {id: a, name: n, situation: s}\n"
        "  - {id: a, name: m, situation: t}\n"), "seeds/p.yaml", 3, "personas[1].id", ("duplicate id 'a'",)),
    Bad("personas-empty", personas_file("p.yaml", "personas: []\n"), "seeds/p.yaml", 1, "personas",
        ("has no personas",)),
    Bad("personas-csv", personas_file("p.csv", "id,name\n"), "seeds/p.csv", None, None,
        ("unsupported file type '.csv'",)),
    # -- eval recipes
    Bad("eval-alias-bomb", text("eval.yaml", "modes:", laughs(9) + "modes:", evaluate), "eval.yaml", "l5:", None,
        ("aliases expand to more than",), bomb=True),
    Bad("eval-given-a-generation-recipe", lambda root: ["evaluate", root / "recipe.yaml", "--offline"],
        "recipe.yaml", "steps:", "steps", ("this is a generation recipe", "recipes/offline-demo/eval.yaml")),
    Bad("eval-unknown-key", text("eval.yaml", "bootstrap:", "bootstap:", evaluate), "eval.yaml", "bootstap:",
        "bootstap", ("did you mean 'bootstrap'?",)),
    Bad("eval-no-candidates", data("eval.yaml", put("candidates", value=[]), evaluate), "eval.yaml", "candidates:",
        "candidates", ("at least 1",)),
    Bad("eval-duplicate-candidate", text("eval.yaml", "{name: weak,", "{name: assistant,", evaluate), "eval.yaml",
        "candidates:", "candidates", ("duplicate candidate name 'assistant'",)),
    Bad("eval-unknown-judge", text("eval.yaml", "judge: eval-judge", "judge: eval-juez", evaluate), "eval.yaml",
        "judge: eval-juez", "judge", ("unknown model profile 'eval-juez'",)),
    Bad("eval-missing-question-file", text("eval.yaml", "path: out_of_scope.txt", "path: fuera.txt", evaluate),
        "eval.yaml", "path: fuera.txt", "sets.out_of_scope.path", ("file not found",)),
    Bad("eval-missing-recipe", text("eval.yaml", "recipe: recipe.yaml", "recipe: receta.yaml", evaluate),
        "eval.yaml", "recipe: receta.yaml", "recipe", ("file not found",)),
    Bad("eval-confidence-above-one", text("eval.yaml", "confidence: 0.95", "confidence: 1.5", evaluate),
        "eval.yaml", "bootstrap:", "bootstrap.confidence", ("less than 1",)),
    Bad("eval-nan-threshold", text("eval.yaml", "on_overlap: flag}", "on_overlap: flag, near_duplicate_threshold: "
        ".nan}", evaluate), "eval.yaml", "paraphrases:", "sets.paraphrases.near_duplicate_threshold",
        ("not a finite number",)),
    Bad("eval-run-dir-not-generated", evaluate, "eval.yaml", None, "run_dir", ("RUN_DIR not found", "synthgen run")),
    # -- command-line options
    Bad("cli-concurrency-huge", lambda root: [*run(root), "--concurrency", "1000000"], None, None, "--concurrency",
        ("1<=x<=1024",)),
    Bad("cli-concurrency-zero", lambda root: [*run(root), "--concurrency", "0"], None, None, "--concurrency",
        ("1<=x<=1024",)),
    Bad("cli-limit-zero", lambda root: [*run(root), "--limit", "0"], None, None, "--limit", ("x>=1",)),
    Bad("cli-limit-not-a-number", lambda root: [*run(root), "--limit", "tres"], None, None, "--limit",
        ("not a valid integer",)),
    Bad("cli-pilot-zero", lambda root: ["estimate", root / "recipe.yaml", "--pilot", "0"], None, None, "--pilot",
        ("x>=1",)),
    Bad("cli-init-unknown-language", cli("init", "{root}/nueva", "--language", "xx"), None, None, "--language",
        ("'xx'", "es, en")),
    Bad("cli-init-into-a-file", cli("init", "{root}/recipe.yaml"), None, None, "DIRECTORY", ("is a file",)),
    Bad("cli-validate-a-directory", cli("validate", "{root}/seeds"), None, None, "RECIPE", ("is a directory",)),
    Bad("cli-run-out-is-a-file", lambda root: [*run(root)[:-1], root / "recipe.yaml"], None, None, "--out",
        ("is a file",)),
    Bad("cli-calibrate-missing-file", lambda root: [*evaluate(root), "--calibrate", root / "etiquetas.csv"], None,
        None, "--calibrate", ("does not exist",)),
    Bad("cli-report-missing-run-dir", cli("report", "{root}/runs/nada"), None, None, "RUN_DIR", ("does not exist",)),
]  # fmt: skip


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` with a content hash: proof that nothing was written."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def expected_line(path: Path, at: str | int | None) -> int | None:
    if at is None or isinstance(at, int):
        return at
    content = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    index = content.find(at)
    assert index >= 0, f"{at!r} not in {path}"
    return content.count("\n", 0, index) + 1


# Run in a child process: the alias bombs must be refused under 1 GiB of address space, and each child
# reports its peak memory and the seconds the command took once its modules were imported.
CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import synthgen.evaluation.evaluator, synthgen.pipeline.runner, synthgen.pipeline.validate
from synthgen.cli import main
started = time.monotonic()
try:
    main(sys.argv[1:], prog_name="synthgen")
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak={{peak}} seconds={{time.monotonic() - started:.3f}}", file=sys.stderr)
"""


def invoke(args: Sequence[str | Path], root: Path, bomb: bool) -> tuple[int, str, float, int | None]:
    """(exit code, stderr, seconds, peak bytes or None)."""
    argv = [str(a) for a in args]
    if not bomb:
        started = time.monotonic()
        result = CliRunner().invoke(main, argv, prog_name="synthgen")
        seconds = time.monotonic() - started
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stderr, seconds, None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(limit=GIB), *argv],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    *message, stats = proc.stderr.rstrip("\n").split("\n")
    assert stats.startswith("peak="), proc.stderr  # the child got as far as running the command
    fields = dict(part.split("=") for part in stats.split())
    return proc.returncode, "\n".join(message) + "\n", float(fields["seconds"]), int(fields["peak"])


def test_the_corpus_is_large_and_covers_every_kind_of_input() -> None:
    ids = [c.id for c in CORPUS]
    assert len(set(ids)) == len(ids) >= 60
    for kind in (
        "recipe-",
        "documents-",
        "seeds-",
        "seeds-jsonl-",
        "seeds-csv-",
        "personas-",
        "eval-",
        "cli-",
    ):
        assert sum(i.startswith(kind) for i in ids) >= 3, kind
    assert sum(c.bomb for c in CORPUS) >= 4


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input_exits_2_naming_file_line_field_and_fix_and_writes_nothing(
    case: Bad, tmp_path: Path, hermetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path.resolve())
    args = case.setup(root)
    monkeypatch.chdir(root)  # a default RUN_DIR (runs/<name>) would land in the project
    before = snapshot(root, hermetic)

    code, stderr, seconds, peak = invoke(args, root, case.bomb)
    print(f"{case.id}: {seconds:.3f} s" + (f", peak {peak >> 20} MiB" if peak is not None else ""))  # -rP

    assert code == 2, stderr
    assert seconds < SECONDS, seconds
    if peak is not None:
        assert peak < GIB, peak
    assert "Traceback" not in stderr
    if case.file is None and not stderr.startswith("error: "):  # click refused an option or argument
        assert f"Error: Invalid value for '{case.field}': " in stderr, stderr  # names it and says the rule
        assert "Try 'synthgen " in stderr and "--help' for help" in stderr, stderr
    elif case.file is None:  # synthgen refused an option's value
        assert stderr.startswith(f"error: {case.field}: ") and stderr.count("\n") == 1, stderr
        assert stderr.rstrip("\n").endswith(")"), stderr
    else:
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr  # one message, one line
        message = stderr.removeprefix("error: ").rstrip("\n")
        file = root / case.file
        line = expected_line(file, case.at)
        where = f"{file}:{line}: " if line is not None else f"{file}: "
        assert message.startswith(where), (where, message)
        if case.field is not None:
            assert message.startswith(f"{where}{case.field}: "), (case.field, message)
        assert message.endswith(")") and " (" in message, message  # the hint, in parentheses
    for word in case.words:
        assert word in stderr, (word, stderr)
    assert snapshot(root, hermetic) == before
    assert not (root / "out").exists() and not (root / "runs").exists() and not (root / "eval-out").exists()


def test_bom_files_load_like_plain_utf8(tmp_path: Path) -> None:
    """The good twin of the BOM cases above: a BOM at the start of a recipe or seeds file is not content."""
    root = project(tmp_path.resolve())
    for path in (root / "recipe.yaml", root / "seeds" / "seeds.yaml", root / "seeds" / "personas.yaml"):
        path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    result = CliRunner().invoke(main, ["validate", str(root / "recipe.yaml")])
    assert result.exit_code == 0, result.output
