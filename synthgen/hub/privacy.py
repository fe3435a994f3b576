"""The privacy gate: personal data never leaves the machine by accident.

Seeds and evaluation queries may come from real students' e-mails, and generated dialogues can copy
them. Before :func:`synthgen.hub.publish` sends anything, :func:`scan_files` reads every text field
of every parquet row, the card and ``run.json`` and reports each hit with where it is (file,
config/split, row, column or line) and a masked excerpt, so the report itself leaks nothing.

Detected: e-mail addresses (RFC 2606 example domains excepted), phone numbers (international
``+CC ...``; Spanish 9-digit numbers starting 6-9 in any grouping), Spanish DNI (8 digits + the
checksum letter, validated) and NIE (X/Y/Z + 7 digits + checksum letter), and the faculty's student
codes (``output.student_code_pattern``). Dates, amounts (``1.144,82 €``), ECTS counts, article and
decree numbers, hashes and DNI-shaped numbers with a wrong letter are not hits. Values the author
wrote into the recipe's ``system_prompt`` (the office's public contact) are allowed: every sft row
repeats that prompt, and it is a deliberate publication, not leaked personal data.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "Hit", "PrivacyReport", "find_personal_data", "scan_files"]

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_EMAIL = re.compile(
    r"(?<![\w.+\-])[\w.+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w\-])"
)
_RESERVED_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$", re.I)
# not glued to a longer number (ISBN 978-84-376-0494-7, 1.612.345.678) nor an amount in euros
_NUM_START = r"(?<![\w+])(?<!\d[.,\-/])"
_NUM_END = r"(?![ .\-]?\d)(?!\w)(?!\s?(?:€|EUR\b|euros?\b))"
_PHONE_INTL = re.compile(
    _NUM_START + r"(?:\+|\b00)[1-9]\d{0,2}[ .\-]?(?:\(0\)[ .\-]?)?\d(?:[ .\-]?\d){6,11}" + _NUM_END
)
_PHONE_ES = re.compile(_NUM_START + r"\(?(?:\+34\)?[ .\-]?)?[6-9](?:[ .\-]?\d){8}" + _NUM_END)
_DNI = re.compile(r"(?<![\w.,\-/])(\d{2}\.?\d{3}\.?\d{3})(?:-?([A-Za-z])| ([A-Z]))(?!\w)")
_NIE = re.compile(r"(?<![\w.,\-/])([XYZxyz])-?(\d{7})(?:-?([A-Za-z])| ([A-Z]))(?!\w)")


@dataclass(frozen=True)
class Hit:
    """One piece of personal data inside one string: ``text[start:end]``."""

    kind: str
    start: int
    end: int
    value: str


def _dni_ok(digits: str, letter: str) -> bool:
    return _DNI_LETTERS[int(digits) % 23] == letter.upper()


def find_personal_data(
    text: str, *, student_code: re.Pattern[str] | None = None, allowed: frozenset[str] = frozenset()
) -> list[Hit]:
    """Every hit in ``text``, left to right; overlapping hits keep the earliest, longest one."""
    hits: list[Hit] = []
    for m in _EMAIL.finditer(text):
        if not _RESERVED_DOMAIN.search(m.group().rsplit("@", 1)[1]):
            hits.append(Hit("email", m.start(), m.end(), m.group()))
    for pattern in (_PHONE_INTL, _PHONE_ES):
        hits += [Hit("phone", m.start(), m.end(), m.group()) for m in pattern.finditer(text)]
    for m in _DNI.finditer(text):
        if _dni_ok(m.group(1).replace(".", ""), m.group(2) or m.group(3)):
            hits.append(Hit("dni", m.start(), m.end(), m.group()))
    for m in _NIE.finditer(text):
        if _dni_ok(str("XYZ".index(m.group(1).upper())) + m.group(2), m.group(3) or m.group(4)):
            hits.append(Hit("nie", m.start(), m.end(), m.group()))
    if student_code is not None:
        hits += [
            Hit("student_code", m.start(), m.end(), m.group())
            for m in student_code.finditer(text)
            if m.group()
        ]
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -(h.end - h.start))):
        if kept and hit.start < kept[-1].end:
            continue
        if hit.value.strip() not in allowed:
            kept.append(hit)
    return kept


def _mask(hit: Hit) -> str:
    """Enough shape to find the hit again, not enough to read it: ``j***@***.es``, ``******78Z``."""
    if hit.kind == "email":
        local, domain = hit.value.rsplit("@", 1)
        return f"{local[0]}***@***.{domain.rsplit('.', 1)[1]}"
    keep = 3 if hit.kind in ("dni", "nie") else 2
    alnum = [i for i, ch in enumerate(hit.value) if ch.isalnum()]
    hidden = set(alnum[:-keep]) if len(alnum) > keep else set(alnum)
    return "".join("*" if i in hidden else ch for i, ch in enumerate(hit.value))


def _excerpt(text: str, hits: list[Hit], target: Hit, width: int = 30) -> str:
    """The text around ``target`` with every hit in view masked, on one line."""
    lo, hi = max(0, target.start - width), min(len(text), target.end + width)
    out, pos = [], lo
    for hit in hits:
        if hit.end <= lo or hit.start >= hi:
            continue
        out += [text[pos : max(pos, hit.start)], _mask(hit)]
        pos = max(pos, hit.end)
    out.append(text[pos:hi])
    snippet = " ".join("".join(out).split())
    return ("…" if lo else "") + snippet + ("…" if hi < len(text) else "")


@dataclass(frozen=True)
class Finding:
    """A hit located in a published file; ``excerpt`` is masked."""

    kind: str
    file: str
    excerpt: str
    config: str | None = None
    split: str | None = None
    row: int | None = None
    column: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        parts = [self.file]
        if self.config:
            parts.append(f"{self.config}/{self.split}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column:
            parts.append(self.column)
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class PrivacyReport:
    findings: list[Finding]
    files: int
    strings: int

    def __bool__(self) -> bool:
        return bool(self.findings)

    def render(self, limit: int = 25) -> str:
        kinds = Counter(f.kind for f in self.findings)
        files = len({f.file for f in self.findings})
        lines = [
            f"personal data found: {len(self.findings)} hit(s) ("
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            + f") in {files} of {self.files} file(s); nothing was sent"
        ]
        lines += [f"  {f.where}: {f.kind}: {f.excerpt}" for f in self.findings[:limit]]
        if len(self.findings) > limit:
            lines.append(f"  ... and {len(self.findings) - limit} more")
        return "\n".join(lines)


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(column path, text) for every string inside a row: ``messages[1].content``."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, child in enumerate(value):
            yield from _strings(child, f"{path}[{i}]")


def _config_split(path: str) -> tuple[str | None, str | None]:
    m = re.fullmatch(r"data/([^/]+)/([^/-]+)-[^/]*\.parquet", path)
    return (m.group(1), m.group(2)) if m else (None, None)


def _rows(path: str, content: bytes) -> Iterator[tuple[int | None, int | None, Any]]:
    """(row, line, value) units of one file: parquet rows, JSONL lines, JSON, or text lines."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(io.BytesIO(content))
        row = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                yield row, None, record
                row += 1
    elif path.endswith(".jsonl"):
        for i, line in enumerate(content.decode("utf-8").splitlines()):
            if line.strip():
                yield i, None, json.loads(line)
    elif path.endswith(".json"):
        yield None, None, json.loads(content.decode("utf-8"))
    else:
        for i, line in enumerate(content.decode("utf-8").splitlines(), start=1):
            yield None, i, line


def scan_files(
    files: Mapping[str, bytes],
    *,
    student_code_pattern: str | None = None,
    allowed: Iterable[str] = (),
) -> PrivacyReport:
    """Scan what is about to be published (path in repo -> bytes); raise nothing, report everything."""
    student_code = re.compile(student_code_pattern) if student_code_pattern else None
    allow = frozenset(v.strip() for v in allowed)
    findings: list[Finding] = []
    strings = 0
    for path in sorted(files):
        config, split = _config_split(path)
        for row, line, value in _rows(path, files[path]):
            for column, text in _strings(value):
                strings += 1
                hits = find_personal_data(text, student_code=student_code, allowed=allow)
                findings += [
                    Finding(
                        kind=hit.kind,
                        file=path,
                        excerpt=_excerpt(text, hits, hit),
                        config=config,
                        split=split,
                        row=row,
                        column=column or None,
                        line=line,
                    )
                    for hit in hits
                ]
    return PrivacyReport(findings=findings, files=len(files), strings=strings)
