"""Seeds and personas: the facts a dataset is built from, loaded with errors that point at the line.

Faculties write seeds by hand (YAML) or export them from a spreadsheet (CSV, often ``;``-separated and
cp1252 on Windows), so every problem raises a ``SeedError`` naming the file, the line where the seed (or
field) starts, the field and the fix. Ids key splits and provenance, so they must be unique and stable.

Decisions: integer ids (``id: 12``) are accepted and stored as text, because YAML and spreadsheets produce
them naturally; text fields are stripped and must keep something visible (zero-width characters alone
are empty; control characters such as NUL are refused); a seed's language is its own ``language``, else
the file's top-level ``language``, else the ``language`` argument, else ``"es"``. Files are read by
:mod:`synthgen.textfiles` (encodings, NULs, YAML syntax and alias bombs reported at their line).

One module on purpose (~460 lines): the three formats share the models, the line bookkeeping and the
error wording, and reading them side by side is how a format's error stays as good as the others'.
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import io
import json
import re
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from synthgen.errors import SeedError
from synthgen.textfiles import BoundedLoader, load_yaml, read_text

__all__ = [
    "PLACEHOLDERS",
    "Persona",
    "Seed",
    "SeedSource",
    "load_personas",
    "load_seeds",
    "seeds_fingerprint",
]

# The sentence `synthgen init` ends each starter answer with, per language: a seed that still holds it
# was never edited, and would teach the model a made-up answer (the scaffold writes these very strings).
PLACEHOLDERS = {
    "es": "Sustituye este texto por la respuesta real de tu facultad.",
    "en": "Replace this text with your faculty's real answer.",
}


def _visible(value: str) -> str:
    """Refuse text a reader cannot see: only zero-width/format characters (Unicode Cf) and spaces, which
    pass a plain emptiness check (``"\u200b"`` from a web page), and control characters such as NUL,
    which break exports and tokenizers. Tabs and line breaks are ordinary text."""
    for i, char in enumerate(value):
        if unicodedata.category(char) == "Cc" and char not in "\t\n\r":
            raise PydanticCustomError(
                "control_character",
                "holds the control character U+{code} at character {at}",
                {"code": f"{ord(char):04X}", "at": i + 1},
            )
    if all(char.isspace() or unicodedata.category(char) == "Cf" for char in value):
        raise PydanticCustomError("invisible_text", "is empty: only invisible characters")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_visible)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
Language = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z]{2}$")]


def _int_to_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class SeedSource(BaseModel):
    """Where the answer is written down, so a reviewer can check it (path relative to the seeds file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    document: Text
    article: Text | None = None

    _article_as_text = field_validator("article", mode="before")(_int_to_text)


class Seed(BaseModel):
    """One question with the answer the office would give: the unit of generation, splits and provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Id
    topic: Text
    question: Text
    answer: Text
    language: Language = "es"
    source: SeedSource | None = None
    tags: tuple[Text, ...] = ()

    _id_as_text = field_validator("id", mode="before")(_int_to_text)

    @field_validator("question", "answer")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        if any(placeholder in value for placeholder in PLACEHOLDERS.values()):
            raise PydanticCustomError("placeholder", "still holds the placeholder text of `synthgen init`")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        """A spreadsheet cell holds tags as ``a|b`` or ``a, b``."""
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split("|" if "|" in value else ",") if t.strip())
        return value


with warnings.catch_warnings():  # `register` shadows ABCMeta.register on the class only; instances are fine
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class Persona(BaseModel):
        """Who asks: the student simulator plays this person, so dialogues vary in register and urgency."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        id: Id
        name: Text
        situation: Text
        register: Literal["informal", "neutral", "formal"] = "neutral"
        urgency: Literal["baja", "media", "alta", "low", "medium", "high"] = "media"
        typical_mistakes: tuple[Text, ...] = ()


def seeds_fingerprint(seeds: Iterable[Seed]) -> str:
    """sha256 of the seeds' canonical JSON, in order: the dataset card's proof of which seeds made it."""
    rows = [seed.model_dump(mode="json") for seed in seeds]
    payload = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_seeds(
    path: str | Path, *, language: str | None = None, taken: Mapping[str, Path] | None = None
) -> list[Seed]:
    """Load seeds from ``.yaml``/``.yml``, ``.jsonl`` or ``.csv``; the first problem raises ``SeedError``.

    ``taken`` maps ids already loaded (from a recipe's earlier seeds files) to their file: reusing one is
    refused here, where the line of the second one is known.
    """
    path = Path(path)
    fmt = _format(path, {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl", ".csv": "csv"})
    if fmt == "yaml":
        records, file_language = _yaml_records(path, "seeds")
    else:
        records, file_language = (_csv_records if fmt == "csv" else _jsonl_records)(path), None
    defaults = {"language": file_language or language or "es"}
    return _validate(Seed, records, path, fmt, defaults, taken or {})


def load_personas(path: str | Path) -> list[Persona]:
    """Load personas from a YAML file: ``{personas: [...]}`` or a bare list."""
    path = Path(path)
    fmt = _format(path, {".yaml": "yaml", ".yml": "yaml"})
    records, _ = _yaml_records(path, "personas")
    return _validate(Persona, records, path, fmt, {})


# -- reading ------------------------------------------------------------------------------------------

M = TypeVar("M", Seed, Persona)
_CSV_COLUMNS = ("id", "topic", "question", "answer", "language", "source_document", "source_article", "tags")
_CSV_OPTIONAL = ("language", "tags", "source_document", "source_article")
_HINTS = {
    "id": "use letters, digits and - _ . : only, e.g. 'matricula-plazos-01'",
    "topic": "name the topic, e.g. 'matrícula'",
    "question": "write the question as a student would ask it, or delete the {unit}",
    "answer": "write the answer the office would give, or delete the {unit}",
    "language": "use a two-letter ISO 639-1 code such as 'es' or 'en'",
    "source": "write source as a mapping: {document: reglamento.md, article: '12'}",
    "tags": "write tags as a list of short words, e.g. [plazos, matrícula]",
    "document": "name the document, relative to the seeds file",
    "name": "give the persona a short name",
    "situation": "describe who is asking and why",
}


@dataclass
class _Record:
    """One seed (or persona) as read, before validation: where it starts and its field path prefix."""

    data: Any
    line: int
    prefix: str = ""  # "seeds[3]" in YAML; rows and JSONL lines are named by their line alone


class _Map(dict[Any, Any]):
    line: int
    key_lines: dict[Any, int]


class _Seq(list[Any]):
    lines: list[int]


class _LineLoader(BoundedLoader):
    """SafeLoader whose mappings and lists remember the 1-based line of themselves, their keys and items."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
    """The mapping with its line and its own keys' lines (the loader refuses duplicate keys)."""
    own = [key_node for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
    result = _Map(loader.construct_mapping(node, deep=True))  # flattens merge keys (<<) into node.value
    result.line, result.key_lines = node.start_mark.line + 1, {}
    for key_node in own:  # keys merged in from elsewhere keep no line: errors fall back to the mapping's
        result.key_lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_sequence(node, deep=True))
    result.lines = [item.start_mark.line + 1 for item in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _format(path: Path, formats: dict[str, str]) -> str:
    if not path.is_file():
        hint = "paths in a recipe are resolved relative to the recipe file; on the command line, to the cwd"
        raise SeedError("file not found", path=path, hint=hint)
    if path.suffix.lower() not in formats:
        hint = "use one of " + ", ".join(sorted(set(formats)))
        raise SeedError(f"unsupported file type {path.suffix or '(no extension)'!r}", path=path, hint=hint)
    return formats[path.suffix.lower()]


def _yaml_records(path: Path, key: str) -> tuple[list[_Record], str | None]:
    fail = functools.partial(SeedError, path=path)
    doc, _ = load_yaml(read_text(path, SeedError), path, SeedError, _LineLoader)
    example = f"write '{key}:' followed by a list of '- id: ...' entries"
    if doc is None:
        raise fail(f"is empty: no {key}", line=1, hint=example)
    language, items, line = None, doc, 1
    if isinstance(doc, _Map):
        if key not in doc:  # other top-level keys (name, description, ...) are free-form metadata
            close = difflib.get_close_matches(key, [str(k) for k in doc], n=1)
            hint = f"rename {close[0]!r} to '{key}'" if close else example
            raise fail(f"has no '{key}:' list", line=doc.line, hint=hint)
        items, line, language = doc[key], doc.key_lines[key], doc.get("language")
        if language is not None and not re.fullmatch(r"\s*[A-Za-z]{2}\s*", str(language)):
            at, message = doc.key_lines["language"], f"{language!r} is not a two-letter ISO 639-1 code"
            raise fail(message, line=at, field="language", hint=_HINTS["language"])
    elif not isinstance(doc, _Seq):
        raise fail(f"must be a '{key}:' mapping or a list, not {_kind(doc)}", line=1, hint=example)
    if not isinstance(items, _Seq):
        raise fail(f"must be a list, not {_kind(items)}", line=line, field=key, hint=example)
    if not items:
        raise fail(f"has no {key}", line=line, field=key, hint=example)
    lines = items.lines
    return [_Record(item, lines[i], f"{key}[{i}]") for i, item in enumerate(items)], language


def _jsonl_records(path: Path) -> list[_Record]:
    records = []
    text = read_text(path, SeedError)
    for n, raw in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 is valid in JSON
        if not raw.strip():
            continue
        try:
            records.append(_Record(json.loads(raw), n))
        except json.JSONDecodeError as exc:
            hint = "one JSON object per line, double-quoted strings, no trailing commas"
            message = f"invalid JSON: {exc.msg} (column {exc.colno})"
            raise SeedError(message, path=path, line=n, hint=hint) from None
    if not records:
        raise SeedError("is empty: no seeds", path=path, line=1, hint='write one {"id": ...} object per line')
    return records


def _delimiter(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        found = csv.Sniffer().sniff(text[:8192], delimiters=",;\t").delimiter
        if found in header:
            return found
    except csv.Error:
        pass
    return max(",;\t", key=header.count)


def _csv_records(path: Path) -> list[_Record]:
    fail = functools.partial(SeedError, path=path)
    text = read_text(path, SeedError, fallback="cp1252")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    rows, start = [], 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):  # skip blank rows and ";;;;" rows from spreadsheets
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        hint = 'close every quote you open; write a quote inside a quoted cell as ""'
        raise fail(f"bad CSV quoting: {exc}", line=start, hint=hint) from None
    known = "known columns: " + ", ".join(_CSV_COLUMNS)
    if not rows:
        raise fail("is empty: no header row", line=1, hint=known)
    header_line, header = rows[0][0], [name.strip().lower() for name in rows[0][1]]
    for name in header:
        if name and name not in _CSV_COLUMNS:
            raise fail("unknown column", line=header_line, field=name, hint=_did_you_mean(name, _CSV_COLUMNS))
        if name and header.count(name) > 1:
            raise fail("column appears twice", line=header_line, field=name, hint=known)
    for name in ("id", "topic", "question", "answer"):
        if name not in header:
            raise fail("missing column", line=header_line, field=name, hint=known)
    records = []
    for line, row in rows[1:]:
        data: dict[str, Any] = {}
        for i, cell in enumerate(row):
            name = header[i] if i < len(header) else ""
            if not name and cell.strip():
                message = f"has {len(row)} fields but the header has {len(header)}"
                hint = "quote cells that contain the separator, or add a header for the extra column"
                raise fail(message, line=line, hint=hint)
            if name and (cell.strip() or name not in _CSV_OPTIONAL):  # an empty optional cell means "unset"
                data[name] = cell
        source = {k: data.pop(f"source_{k}") for k in ("document", "article") if f"source_{k}" in data}
        records.append(_Record({**data, "source": source} if source else data, line))
    if not records:
        raise fail("has no seeds: only a header row", line=header_line, hint="add one row per seed")
    return records


# -- validating ---------------------------------------------------------------------------------------


def _validate(
    model: type[M],
    records: list[_Record],
    path: Path,
    fmt: str,
    defaults: dict[str, str],
    taken: Mapping[str, Path] | None = None,
) -> list[M]:
    """Validate each record; refuse duplicate ids, naming both lines (or the other file)."""
    unit = "row" if fmt == "csv" else "seed" if model is Seed else "persona"
    out: list[M] = []
    first_line: dict[str, int] = {}
    for rec in records:
        if not isinstance(rec.data, dict):
            kind = "a JSON object" if fmt == "jsonl" else "a mapping of fields"
            required = ", ".join(n for n, f in model.model_fields.items() if f.is_required())
            message, field = f"must be {kind}, not {_kind(rec.data)}", rec.prefix or None
            raise SeedError(message, path=path, line=rec.line, field=field, hint=f"give {required}")
        try:
            item = model.model_validate({**defaults, **rec.data})
        except ValidationError as exc:
            raise _translate(exc, rec, path, model, fmt, unit) from None
        line = _line_of(rec, ("id",))
        if item.id in first_line:
            hint = f"first defined at line {first_line[item.id]}; give each {unit} its own id"
            field = f"{rec.prefix}.id" if rec.prefix else "id"
            raise SeedError(f"duplicate id {item.id!r}", path=path, line=line, field=field, hint=hint)
        if taken and item.id in taken:
            field = f"{rec.prefix}.id" if rec.prefix else "id"
            hint = f"ids must be unique across all seeds files of a recipe; rename this {unit}'s id"
            message = f"duplicate id {item.id!r}: also in {taken[item.id]}"
            raise SeedError(message, path=path, line=line, field=field, hint=hint)
        first_line[item.id] = line
        out.append(item)
    return out


def _translate(
    exc: ValidationError, rec: _Record, path: Path, model: type[M], fmt: str, unit: str
) -> SeedError:
    """Turn pydantic's first error (an unknown field first: it explains a 'missing' twin) into our words."""
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc, kind, value = err["loc"], err["type"], err.get("input")
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if fmt == "csv":
        name = name.replace("source.", "source_")
    last = str(next((p for p in reversed(loc) if isinstance(p, str)), name))
    hint = _HINTS.get(last, "").replace("{unit}", unit) or None
    if kind == "extra_forbidden":
        known = SeedSource.model_fields if loc[0] == "source" and len(loc) > 1 else model.model_fields
        message, hint = "unknown field", _did_you_mean(last, list(known))
    elif kind == "missing":
        message = "is required"
        hints = {"csv": f"fill the '{name}' column", "jsonl": f'add "{last}": ... to this object'}
        hint = hints.get(fmt, f"add '{last}: ...' to this {unit}")
    elif kind == "string_too_short":
        message = "is empty"
    elif kind == "invisible_text":
        message = f"{err['msg']} ({_invisible(value)})"
    elif kind == "placeholder":
        message = err["msg"]
        hint = f"write the faculty's real {last} in its place, or delete the {unit}"
    elif kind == "control_character":
        message = err["msg"]
        hint = "delete it: control characters come from binary exports or copy-paste, and break training data"
    elif kind == "string_pattern_mismatch" and last == "id":
        message = f"{value!r} has characters other than letters, digits and - _ . :"
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} is not a two-letter ISO 639-1 code"
    elif kind == "literal_error":
        message, hint = f"{value!r} is not allowed", f"use one of {err.get('ctx', {}).get('expected')}"
    elif kind.endswith("_type"):
        expected = {"string_type": "text", "tuple_type": "a list of text"}.get(kind, "a mapping")
        message = f"must be {expected}, not {_kind(value)}"
        if fmt == "yaml" and kind == "string_type" and not isinstance(value, (dict, list, type(None))):
            hint = f"put the value in quotes: YAML read it as {_kind(value)}"
    else:
        message = err["msg"]
    field = f"{rec.prefix}.{name}".lstrip(".").replace(".[", "[")
    return SeedError(message, path=path, line=_line_of(rec, loc), field=field, hint=hint)


def _line_of(rec: _Record, loc: Iterable[Any]) -> int:
    """The line of the deepest key or item of ``loc`` that YAML marked; else where the record starts."""
    line, node = rec.line, rec.data
    for part in loc:
        if isinstance(node, _Map) and part in node.key_lines:
            line, node = node.key_lines[part], node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and part < len(node):
            line, node = node.lines[part], node[part]
        else:
            break
    return line


def _invisible(value: object) -> str:
    """Name the invisible characters, so the user knows what to look for in an editor that hides them."""
    codes = sorted({f"U+{ord(c):04X}" for c in str(value) if unicodedata.category(c) == "Cf"})
    return ("zero-width or format characters " + ", ".join(codes)) if codes else "whitespace"


def _kind(value: object) -> str:
    """How YAML or JSON read a value, in the user's words (``yes`` is a yes/no value in YAML)."""
    kinds: list[tuple[type | tuple[type, ...], str]] = [(bool, "a yes/no value"), ((int, float), "a number")]
    kinds += [(str, "text"), (dict, "a mapping"), (list, "a list")]
    found = (name for types, name in kinds if isinstance(value, types))
    return "empty" if value is None else next(found, f"a {type(value).__name__}")


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + "known: " + ", ".join(known)
