"""Seeds load the same from YAML, JSONL and spreadsheet CSV; every error names file, line and field."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from synthgen.errors import SeedError
from synthgen.seeds import Persona, Seed, SeedSource, load_personas, load_seeds, seeds_fingerprint

EXPECTED = [
    Seed(
        id="matricula-01",
        topic="matrícula",
        question="¿Cuándo es la matrícula?",
        answer="Del 1 al 15 de julio, en la secretaría.",
        language="es",
        source=SeedSource(document="documents/reglamento.md", article="12"),
        tags=("plazos", "matrícula"),
    ),
    Seed(id="becas-02", topic="becas", question="¿Cuándo?", answer='Antes del "30" de septiembre.'),
    Seed(
        id="tfg:03",
        topic="tfg",
        question="Who supervises the thesis?",
        answer="A faculty member.",
        language="en",
        source=SeedSource(document="documents/tfg.md"),
    ),
]

YAML = """\
language: es
seeds:
  - id: matricula-01
    topic: matrícula
    question: ¿Cuándo es la matrícula?
    answer: Del 1 al 15 de julio, en la secretaría.
    source: {document: documents/reglamento.md, article: 12}
    tags: [plazos, matrícula]
  - id: becas-02
    topic: becas
    question: "¿Cuándo?"
    answer: |
      Antes del "30" de septiembre.
  - id: tfg:03
    topic: tfg
    question: Who supervises the thesis?
    answer: A faculty member.
    language: en
    source:
      document: documents/tfg.md
"""

JSONL = """\
{"id": "matricula-01", "topic": "matrícula", "question": "¿Cuándo es la matrícula?", \
"answer": "Del 1 al 15 de julio, en la secretaría.", \
"source": {"document": "documents/reglamento.md", "article": "12"}, "tags": ["plazos", "matrícula"]}

{"id": "becas-02", "topic": "becas", "question": "¿Cuándo?", "answer": "Antes del \\"30\\" de septiembre."}
{"id": "tfg:03", "topic": "tfg", "question": "Who supervises the thesis?", "answer": "A faculty member.", \
"language": "en", "source": {"document": "documents/tfg.md"}}
"""

ROWS = [
    ["id", "topic", "question", "answer", "language", "source_document", "source_article", "tags"],
    [
        "matricula-01",
        "matrícula",
        "¿Cuándo es la matrícula?",
        '"Del 1 al 15 de julio, en la secretaría."',
        "",
        "documents/reglamento.md",
        "12",
        "plazos|matrícula",
    ],
    ["becas-02", "becas", "¿Cuándo?", '"Antes del ""30"" de septiembre."', "", "", "", ""],
    ["tfg:03", "tfg", "Who supervises the thesis?", "A faculty member.", "en", "documents/tfg.md", "", ""],
]


def csv_text(sep: str, newline: str = "\n") -> str:
    return newline.join(sep.join(row) for row in ROWS) + newline


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- happy paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("seeds.yaml", YAML),
        ("seeds.yml", YAML),
        ("seeds.jsonl", JSONL),
        ("seeds.csv", csv_text(",")),
        ("excel-windows.csv", csv_text(";", "\r\n").encode("cp1252")),
        ("excel-utf8.csv", b"\xef\xbb\xbf" + csv_text("\t", "\r\n").encode("utf-8")),
        ("Upper.CSV", csv_text(",").replace("id,topic,", " ID , Topic ,", 1)),
    ],
)
def test_every_format_loads_the_same_seeds(tmp_path: Path, name: str, content: str | bytes) -> None:
    assert load_seeds(write(tmp_path, name, content)) == EXPECTED


def test_cp1252_file_is_really_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        csv_text(";").encode("cp1252").decode("utf-8")


def test_tags_from_a_cell_split_on_pipe_or_comma(tmp_path: Path) -> None:
    rows = 'id,topic,question,answer,tags\na,t,q,r,"x, y ,z"\nb,t,q,r,x|y\nc,t,q,r,"x,y|z"\nd,t,q,r,\n'
    seeds = load_seeds(write(tmp_path, "s.csv", rows))
    assert [s.tags for s in seeds] == [("x", "y", "z"), ("x", "y"), ("x,y", "z"), ()]


def test_source_article_numbers_become_text(tmp_path: Path) -> None:
    text = "- {id: a, topic: t, question: q, answer: r, source: {document: d.md, article: 7}}\n"
    (seed,) = load_seeds(write(tmp_path, "s.yaml", text))
    assert seed.source == SeedSource(document="d.md", article="7")


def test_integer_ids_are_accepted_as_text(tmp_path: Path) -> None:
    (seed,) = load_seeds(write(tmp_path, "s.yaml", "- {id: 12, topic: t, question: q, answer: r}\n"))
    assert seed.id == "12"


def test_text_is_stripped_and_block_scalars_lose_their_newline(tmp_path: Path) -> None:
    text = "- id: ' a '\n  topic: t\n  question: |\n    q?\n  answer: '  r  '\n"
    (seed,) = load_seeds(write(tmp_path, "s.yaml", text))
    assert (seed.id, seed.question, seed.answer) == ("a", "q?", "r")


def test_language_comes_from_seed_then_file_then_argument_then_es(tmp_path: Path) -> None:
    bare = write(tmp_path, "bare.yaml", "- {id: a, topic: t, question: q, answer: r}\n")
    assert load_seeds(bare)[0].language == "es"
    assert load_seeds(bare, language="en")[0].language == "en"
    seed = "{id: %s, topic: t, question: q, answer: r%s}"
    text = f"language: CA\nseeds:\n- {seed % ('a', '')}\n- {seed % ('b', ', language: fr')}\n"
    filed = write(tmp_path, "filed.yaml", text)
    assert [s.language for s in load_seeds(filed, language="en")] == ["ca", "fr"]
    rows = write(tmp_path, "s.csv", "id,topic,question,answer,language\na,t,q,r,\nb,t,q,r,de\n")
    assert [s.language for s in load_seeds(rows, language="en")] == ["en", "de"]


def test_blank_rows_and_trailing_separators_from_spreadsheets_are_ignored(tmp_path: Path) -> None:
    text = "\nid;topic;question;answer;;\n;;;;;\na;t;q;r;;\n\n"
    assert [s.id for s in load_seeds(write(tmp_path, "s.csv", text))] == ["a"]


def test_quoted_cells_may_span_lines_and_errors_point_at_the_row_start(tmp_path: Path) -> None:
    text = 'id,topic,question,answer\na,t,"line one\nline two",r\nb,t,q,"  "\n'
    path = write(tmp_path, "s.csv", text)
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    assert (info.value.line, info.value.field) == (4, "answer")


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    text = "base: &b {topic: t, question: q, answer: r}\nseeds:\n- {<<: *b, id: a, answer: own}\n"
    (seed,) = load_seeds(write(tmp_path, "s.yaml", text))
    assert seed.answer == "own"


def laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs" block of top-level keys: each level aliases the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("loader", [load_seeds, load_personas])
def test_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound(tmp_path: Path, loader: Any) -> None:
    """Before, a bomb in free-form metadata loaded (387M values, shared by reference) and one inside a seed
    hung validation; now it is refused while composing, at the line of the alias that crosses the bound."""
    key = "seeds" if loader is load_seeds else "personas"
    item = SEED.format(id="a") if key == "seeds" else "  - {id: a, name: n, situation: s}\n"
    path = write(tmp_path, "s.yaml", f"{key}:\n{item}" + laughs(9))
    started = time.monotonic()
    with pytest.raises(SeedError) as info:
        loader(path)
    assert time.monotonic() - started < 1.0
    text = path.read_text(encoding="utf-8")
    assert "aliases expand to more than 100,000 values (at *l4)" in str(info.value)
    assert info.value.line == text.splitlines().index(laughs(9).splitlines()[5]) + 1
    assert "<<: *defaults" in str(info.value.hint)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "seeds:\n  - &a {id: a, topic: t, question: q, answer: r, tags: [*a]}\n")
    with pytest.raises(SeedError, match=r"the alias \*a refers to a value that contains it") as info:
        load_seeds(path)
    assert info.value.line == 2


def test_fingerprint_is_stable_and_sees_every_change() -> None:
    first = seeds_fingerprint(EXPECTED)
    assert first == seeds_fingerprint(list(EXPECTED)) and len(first) == 64
    changed = [EXPECTED[0].model_copy(update={"answer": "Otro plazo."}), *EXPECTED[1:]]
    assert seeds_fingerprint(changed) != first
    assert seeds_fingerprint(list(reversed(EXPECTED))) != first


def test_seeds_are_frozen_and_hashable() -> None:
    assert len(set(EXPECTED)) == 3
    with pytest.raises(ValueError, match="frozen"):
        EXPECTED[0].answer = "x"


PERSONAS = """\
personas:
  - id: first-year
    name: Estudiante de primer curso
    situation: Acaba de llegar y no conoce los trámites.
    register: informal
    urgency: alta
    typical_mistakes: [confunde matrícula y preinscripción]
  - id: parent
    name: Madre de un estudiante
    situation: Pregunta por su hijo.
"""


def test_personas_load_from_mapping_or_list(tmp_path: Path) -> None:
    personas = load_personas(write(tmp_path, "personas.yaml", PERSONAS))
    assert personas[0] == Persona(
        id="first-year",
        name="Estudiante de primer curso",
        situation="Acaba de llegar y no conoce los trámites.",
        register="informal",
        urgency="alta",
        typical_mistakes=("confunde matrícula y preinscripción",),
    )
    assert (personas[1].register, personas[1].urgency) == ("neutral", "media")
    bare = textwrap.dedent(PERSONAS.removeprefix("personas:\n"))
    assert load_personas(write(tmp_path, "bare.yml", bare)) == personas


# -- errors: each names the file, the line, the field and the fix -----------------------------------------

SEED = "  - id: {id}\n    topic: t\n    question: q\n    answer: r\n"

ERRORS: dict[str, tuple[str, str | bytes, int, str | None, str]] = {
    # name: (file name, content, line, field, words in the message or hint)
    "empty yaml": ("s.yaml", "", 1, None, "is empty"),
    "yaml comments only": ("s.yaml", "# nothing yet\n", 1, None, "is empty"),
    "no seeds": ("s.yaml", "language: es\nseeds: []\n", 2, "seeds", "has no seeds"),
    "seeds key missing": (
        "s.yaml",
        "language: es\nseed:\n  - {id: a}\n",
        1,
        None,
        "rename 'seed' to 'seeds'",
    ),
    "yaml syntax": ("s.yaml", "seeds:\n  - id: a\n    topic: t\n   question: q\n", 4, None, "not valid YAML"),
    "yaml unterminated quote": ("s.yaml", 'seeds:\n  - id: "a\n', 2, None, "column 9: the quote opened here"),
    "yaml key without colon": (
        "s.yaml",
        "seeds:\n  - id: a\n    topic t\n    question: q\n",
        3,
        None,
        "has no 'key: value' colon",
    ),
    "yaml duplicate key": (
        "s.yaml",
        "seeds:\n  - id: a\n    answer: x\n    answer: y\n",
        4,
        None,
        "duplicate key 'answer' (first at line 3)",
    ),
    "top level is text": ("s.yaml", "just some text\n", 1, None, "not text"),
    "seeds is a mapping": ("s.yaml", "seeds:\n  a: 1\n", 1, "seeds", "must be a list, not a mapping"),
    "seed not a mapping": (
        "s.yaml",
        "seeds:\n" + SEED.format(id="a") + "  - just text\n",
        6,
        "seeds[1]",
        "mapping",
    ),
    "missing answer": (
        "s.yaml",
        "seeds:\n" + SEED.format(id="a") + "  - id: b\n    topic: t\n    question: q\n",
        6,
        "seeds[1].answer",
        "is required (add 'answer: ...' to this seed)",
    ),
    "blank question": (
        "s.yaml",
        SEED.format(id="a").replace("question: q", "question: '   '"),
        3,
        "seeds[0].question",
        "is empty (write the question",
    ),
    "blank answer": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", 'answer: "\\t "'),
        4,
        "seeds[0].answer",
        "is empty (write the answer the office would give, or delete the seed)",
    ),
    "answer is a list": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", "answer: [a, b]"),
        4,
        "seeds[0].answer",
        "must be text, not a list",
    ),
    "answer read as a boolean": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", "answer: yes"),
        4,
        "seeds[0].answer",
        "put the value in quotes",
    ),
    "id is a mapping": ("s.yaml", SEED.format(id="{x: 1}"), 1, "seeds[0].id", "must be text, not a mapping"),
    "unknown field": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", "anwser: r"),
        4,
        "seeds[0].anwser",
        "unknown field (did you mean 'answer'?",
    ),
    "unknown source field": (
        "s.yaml",
        SEED.format(id="a") + "    source:\n      document: d.md\n      articel: 3\n",
        7,
        "seeds[0].source.articel",
        "did you mean 'article'?",
    ),
    "duplicate id": (
        "s.yaml",
        "language: es\nseeds:\n" + SEED.format(id="x") + SEED.format(id="y") + SEED.format(id="x"),
        11,
        "seeds[2].id",
        "duplicate id 'x' (first defined at line 3",
    ),
    "bad id characters": ("s.yaml", SEED.format(id="'a b'"), 1, "seeds[0].id", "'a b' has characters other"),
    "bad seed language": (
        "s.yaml",
        SEED.format(id="a") + "    language: spanish\n",
        5,
        "seeds[0].language",
        "'spanish' is not a two-letter ISO 639-1 code",
    ),
    "bad file language": (
        "s.yaml",
        "language: 1\nseeds:\n" + SEED.format(id="a"),
        1,
        "language",
        "ISO 639-1",
    ),
    "empty tag": ("s.yaml", SEED.format(id="a") + "    tags: [a, '']\n", 5, "seeds[0].tags[1]", "is empty"),
    "bad jsonl line": (
        "s.jsonl",
        '{"id": "a", "topic": "t", "question": "q", "answer": "r"}\n\n{"id": "b",}\n',
        3,
        None,
        "invalid JSON",
    ),
    "jsonl line not an object": ("s.jsonl", '\n["a", "b"]\n', 2, None, "must be a JSON object, not a list"),
    "jsonl missing topic": (
        "s.jsonl",
        '{"id": "a", "question": "q", "answer": "r"}\n',
        1,
        "topic",
        'is required (add "topic": ... to this object)',
    ),
    "empty jsonl": ("s.jsonl", "\n\n", 1, None, "no seeds"),
    "csv bad encoding": (
        "s.csv",
        "id;topic;question;answer\na;t;¿Qué?;sí\n".encode("cp1252") + b"b;t;q;r\x81\n",
        3,
        None,
        "byte 0x81 at column 8 (byte offset 45) (save the file as UTF-8)",
    ),
    "csv bad utf8 after valid utf8": (
        "s.csv",
        "id,topic,question,answer\na,Á,q,r\n".encode() + b"b,t,q,\x90\n",
        3,
        None,
        "byte 0x90",
    ),
    "csv unknown column": (
        "s.csv",
        "id,topic,question,anwser\na,t,q,r\n",
        1,
        "anwser",
        "did you mean 'answer'? known: id, topic",
    ),
    "csv missing column": ("s.csv", "id,topic,question\na,t,q\n", 1, "answer", "missing column"),
    "csv duplicate column": ("s.csv", "id,topic,question,answer,ID\na,t,q,r,b\n", 1, "id", "appears twice"),
    "csv unterminated quote": (
        "s.csv",
        'id,topic,question,answer\na,t,q,r\nb,t,"q,r\nc,t,q,r\n',
        3,
        None,
        "quoting",
    ),
    "csv text after quote": ("s.csv", 'id,topic,question,answer\na,t,"q"x,r\n', 2, None, "quoting"),
    "csv too many fields": (
        "s.csv",
        "id,topic,question,answer\na,t,q,r\nb,t,q,r,extra\n",
        3,
        None,
        "5 fields",
    ),
    "csv empty answer": (
        "seeds.csv",
        "id,topic,question,answer\na,t,q,r\nb,t,q,  \n",
        3,
        "answer",
        "seeds.csv:3: answer: is empty (write the answer the office would give, or delete the row)",
    ),
    "csv missing source document": (
        "s.csv",
        "id,topic,question,answer,source_article\na,t,q,r,12\n",
        2,
        "source_document",
        "fill the 'source_document' column",
    ),
    "csv duplicate id": (
        "s.csv",
        "id;topic;question;answer\nx;t;q;r\ny;t;q;r\nx;t;q;r\n",
        4,
        "id",
        "first defined at line 2",
    ),
    "question of zero-width spaces (yaml escapes)": (
        "s.yaml",
        SEED.format(id="a").replace("question: q", 'question: "\\u200b\\u200b"'),
        3,
        "seeds[0].question",
        "is empty: only invisible characters",
    ),
    "answer of format characters and spaces": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", 'answer: "\\u200b \\ufeff\\u2060 \\u200d"'),
        4,
        "seeds[0].answer",
        "only invisible characters (zero-width or format characters U+200B, U+200D, U+2060, U+FEFF) "
        "(write the answer the office would give",
    ),
    "jsonl topic of zero-width characters": (
        "s.jsonl",
        '{"id": "a", "topic": "t", "question": "q", "answer": "r"}\n'
        '{"id": "b", "topic": "\\u200b\\u200c", "question": "q", "answer": "r"}\n',
        2,
        "topic",
        "is empty: only invisible characters",
    ),
    "csv answer of zero-width characters": (
        "s.csv",
        "id,topic,question,answer\na,t,q,\u200b\u200c\u200b\n",
        2,
        "answer",
        "is empty: only invisible characters",
    ),
    "NUL through a yaml escape": (
        "s.yaml",
        SEED.format(id="a").replace("answer: r", 'answer: "r\\0"'),
        4,
        "seeds[0].answer",
        "holds the control character U+0000",
    ),
    "NUL through a jsonl escape": (
        "s.jsonl",
        '{"id": "a", "topic": "t", "question": "q\\u0000", "answer": "r"}\n',
        1,
        "question",
        "holds the control character U+0000",
    ),
    "control character in a csv cell": (
        "s.csv",
        "id,topic,question,answer\na,t,q\x07q,r\n",
        2,
        "question",
        "holds the control character U+0007",
    ),
    "raw NUL byte in a yaml file": (
        "s.yaml",
        "seeds:\n" + SEED.format(id="a").replace("answer: r", "answer: r\x00r"),
        5,
        None,
        "NUL character (U+0000) at column 14",
    ),
    "raw NUL byte in a csv file": (
        "s.csv",
        b"id,topic,question,answer\na,t,q,r\nb,t,q\x00,r\n",
        3,
        None,
        "NUL character (U+0000) at column 6",
    ),
    "answer still the placeholder of synthgen init": (
        "s.yaml",
        SEED.format(id="a").replace(
            "answer: r", "answer: Ordinary enrolment. Replace this text with your faculty's real answer."
        ),
        4,
        "seeds[0].answer",
        "still holds the placeholder text of `synthgen init` (write the faculty's real answer",
    ),
    "csv question with the Spanish placeholder": (
        "s.csv",
        "id;topic;question;answer\na;t;¿Cuándo? Sustituye este texto por la respuesta real de tu facultad.;r\n",
        2,
        "question",
        "placeholder text of `synthgen init`",
    ),
    "csv header only": ("s.csv", "id,topic,question,answer\n", 1, None, "no seeds"),
    "csv empty": ("s.csv", b"\xef\xbb\xbf\n", 1, None, "no header row"),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_seed_errors_name_file_line_and_field(tmp_path: Path, case: str) -> None:
    name, content, line, field, words = ERRORS[case]
    path = write(tmp_path, name, content)
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert f"{name}:{line}: " in str(err)
    assert words in str(err)
    assert err.hint


def test_missing_file_says_how_paths_resolve(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), None, None)
    assert "nope.yaml: file not found" in str(info.value) and "relative to the recipe" in str(info.value)


def test_unsupported_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "seeds.txt", "id: a\n")
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), None, None)
    assert "seeds.txt: unsupported file type '.txt'" in str(info.value)
    assert ".csv, .jsonl, .yaml, .yml" in str(info.value)


@pytest.mark.parametrize(
    ("content", "line", "field", "words"),
    [
        (
            PERSONAS + "  - id: parent\n    name: n\n    situation: s\n",
            11,
            "personas[2].id",
            "duplicate id 'parent'",
        ),
        (PERSONAS.replace("register: informal", "register: casual"), 5, "personas[0].register", "'casual'"),
        (
            PERSONAS.replace("    situation: Pregunta", "    situacion: Pregunta"),
            10,
            "personas[1].situacion",
            "situation",
        ),
        ("personas: []\n", 1, "personas", "has no personas"),
    ],
)
def test_persona_errors(tmp_path: Path, content: str, line: int, field: str, words: str) -> None:
    path = write(tmp_path, "personas.yaml", content)
    with pytest.raises(SeedError) as info:
        load_personas(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert f"personas.yaml:{line}: " in str(info.value) and words in str(info.value)


def test_personas_must_be_yaml(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="unsupported file type"):
        load_personas(write(tmp_path, "personas.csv", "id,name\n"))


# -- the seed set that ships ------------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "seeds" / "faculty-sciences-es"


def test_shipped_faculty_seeds_and_personas_load() -> None:
    seeds = load_seeds(SHIPPED / "seeds.yaml")
    assert len(seeds) >= 50
    assert len({seed.topic for seed in seeds}) >= 8
    assert len(load_personas(SHIPPED / "personas.yaml")) >= 8
    documents = {seed.source.document for seed in seeds if seed.source}
    missing = sorted(doc for doc in documents if not (SHIPPED / doc).is_file())
    assert not missing, f"source documents not found next to seeds.yaml: {missing}"
