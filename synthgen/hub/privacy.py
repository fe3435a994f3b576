"""The privacy gate: personal data never leaves the machine by accident.

Seeds and evaluation queries may come from real students' e-mails, and generated dialogues can copy
them. Before :func:`synthgen.hub.publish` sends anything, :func:`scan_files` reads every text field
of every parquet row, the card and ``run.json`` and reports each hit with where it is (file,
config/split, row, column or line) and a masked excerpt, so the report itself leaks nothing.

Detected (docs/privacy.md has the variants tried): e-mail addresses, plain or obfuscated (``[at]``,
``(dot)``, ``arroba``/``punto``, full-width ``＠``, spaces around ``@``, any script; RFC 2606 example
domains excepted), phone numbers (international ``+CC ...``; Spanish 9-digit numbers starting 6-9 in
any grouping), Spanish DNI and NIE with their checksum letter (validated), IBANs (the country's length
and the mod-97 checksum, validated), and, only next to a word naming them, a DNI or NIE without its
letter, passport numbers and student codes. Student codes follow ``output.student_code_pattern``
when the recipe has one; without it, only codes next to "expediente", "NIU", "student id" and the
like are found. Dates, amounts (``1.144,82 €``), ECTS counts, article and decree numbers, ISBNs,
hashes and DNI-shaped numbers with a wrong letter are not hits. Values the author wrote into the
recipe's ``system_prompt`` (the office's public contact) are allowed, however they are written
again: every sft row repeats that prompt, and it is a deliberate publication, not leaked personal
data. Regular expressions of our own, not Presidio: see docs/privacy.md for why.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "Hit", "PrivacyReport", "find_personal_data", "scan_files"]

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"

# e-mail, written plainly or the ways people write it to dodge scrapers: ``ana [at] ucm (dot) es``,
# ``ana arroba ucm punto es``, ``ana＠ucm.es``, ``ana @ ucm.es``; any script (``josé@universidad.españa``)
_AT = (
    r"(?:[ \t]{0,2}[@＠﹫][ \t]{0,2}|\s*[\[({<]\s*(?i:at|arroba)\s*[\])}>]\s*"
    r"|\s+(?i:arroba)\s+)"
)
_DOT = r"(?:[.．]|\s*[\[({<]\s*(?i:dot|punto)\s*[\])}>]\s*|\s+(?i:dot|punto)\s+)"
_LABEL = r"[^\W_](?:[\w\-]*[^\W_])?"
_EMAIL = re.compile(
    rf"(?<![\w.+\-])[\w.+\-]+{_AT}{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}(?:[^\W\d_]{{2,24}}|xn--[\w\-]+)(?![\w\-])"
)
_AT_ANY, _DOT_ANY = re.compile(_AT), re.compile(_DOT)
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
# IBAN: country code, check digits, then groups of 4 (spaced or not); kept only if the length is the
# country's and the mod-97 checksum holds, so hex ids and reference numbers never pass by chance
_IBAN = re.compile(r"(?<!\w)[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]{4}){2,7}(?:[ \-]?[A-Za-z0-9]{1,3})?(?!\w)")
_IBAN_LENGTHS = {
    country: int(length)
    for country, length in re.findall(
        r"([A-Z]{2})(\d\d)",
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20 EG29 "
        "ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IS26 IT27 JO30 KW30 KZ20 "
        "LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 "
        "QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20",
    )
}
# Numbers that are personal only next to a word saying what they are: a DNI without its letter is
# just 8 digits, a passport or student code just a code. Up to three short words may come between.
_GAP = r"[^\w\n]{1,3}(?:[^\W\d_]{1,12}[^\w\n]{1,3}){0,3}"
_ID_WORDS = r"(?i:\bD\.?N\.?I\b|\bN\.?I\.?[EF]\b|\bdocumento\b|\bidentidad\b|\bidentity\s+card\b)"
_ID_BARE = re.compile(
    _ID_WORDS + _GAP + r"(?<![\w.,\-/])(?P<v>[XYZxyz]-?\d{7}|\d{1,2}\.?\d{3}\.?\d{3})(?!\w)(?![.,\-/]\d)"
)
_PASSPORT = re.compile(
    r"(?i:\bpasaporte|\bpassport)"
    + _GAP
    + r"(?<![\w.,\-/])(?P<v>(?=(?:[A-Z]*\d){4})[A-Z0-9]{6,9})(?![\w\-/])"
)
_STUDENT_WORDS = (
    r"(?i:\bexpediente\b|\bNIU\b|\b(?:c[óo]digo|n[úu]mero|n[º°o]\.?|carn[ée]t?)\s+de\s+(?:estudiante|alumn[oa])\b"
    r"|\bstudent\s+(?:id|number|code|no\b\.?))"
)
_STUDENT_CODE = re.compile(
    _STUDENT_WORDS + _GAP + r"(?<![\w.,\-/])(?P<v>[A-Za-z]{0,4}\d{5,10}|\d{4}-\d{5,6})(?![\w\-/])(?![.,]\d)"
)


@dataclass(frozen=True)
class Hit:
    """One piece of personal data inside one string: ``text[start:end]``."""

    kind: str
    start: int
    end: int
    value: str

    @property
    def key(self) -> str:
        """The value as the same datum however it was written (``ana (at) UCM.es`` -> ``ana@ucm.es``)."""
        if self.kind == "email":
            plain = _DOT_ANY.sub(".", _AT_ANY.sub("@", self.value))
            return "".join(unicodedata.normalize("NFKC", plain).split()).lower()
        return "".join(ch for ch in self.value if ch.isalnum()).upper()


def _dni_ok(digits: str, letter: str) -> bool:
    return _DNI_LETTERS[int(digits) % 23] == letter.upper()


def _iban(candidate: str) -> int:
    """Length of the longest leading run of ``candidate``'s groups that is a valid IBAN (0: none)."""
    groups = list(re.finditer(r"[A-Za-z0-9]+", candidate))
    while groups:
        compact = "".join(g.group() for g in groups).upper()
        if _IBAN_LENGTHS.get(compact[:2]) == len(compact):
            digits = "".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])
            if int(digits) % 97 == 1:
                return groups[-1].end()
        groups.pop()
    return 0


def find_personal_data(
    text: str, *, student_code: re.Pattern[str] | None = None, allowed: frozenset[str] = frozenset()
) -> list[Hit]:
    """Every hit in ``text``, left to right; overlapping hits keep the earliest, longest one.

    ``student_code`` is the faculty's pattern; without one, codes are found only next to words like
    "expediente", "NIU" or "student id". ``allowed`` holds values (or their :attr:`Hit.key`) to pass.
    """
    hits: list[Hit] = []
    for m in _EMAIL.finditer(text):
        hit = Hit("email", m.start(), m.end(), m.group())
        if not _RESERVED_DOMAIN.search(hit.key.rsplit("@", 1)[1]):
            hits.append(hit)
    for pattern in (_PHONE_INTL, _PHONE_ES):
        hits += [Hit("phone", m.start(), m.end(), m.group()) for m in pattern.finditer(text)]
    for m in _DNI.finditer(text):
        if _dni_ok(m.group(1).replace(".", ""), m.group(2) or m.group(3)):
            hits.append(Hit("dni", m.start(), m.end(), m.group()))
    for m in _NIE.finditer(text):
        if _dni_ok(str("XYZ".index(m.group(1).upper())) + m.group(2), m.group(3) or m.group(4)):
            hits.append(Hit("nie", m.start(), m.end(), m.group()))
    for m in _IBAN.finditer(text):
        if length := _iban(m.group()):
            hits.append(Hit("iban", m.start(), m.start() + length, m.group()[:length]))
    for m in _ID_BARE.finditer(text):
        kind = "dni" if m.group("v")[0].isdigit() else "nie"
        hits.append(Hit(kind, m.start("v"), m.end("v"), m.group("v")))
    hits += [Hit("passport", m.start("v"), m.end("v"), m.group("v")) for m in _PASSPORT.finditer(text)]
    if student_code is not None:
        found = [(m.start(), m.end(), m.group()) for m in student_code.finditer(text) if m.group()]
    else:
        found = [(m.start("v"), m.end("v"), m.group("v")) for m in _STUDENT_CODE.finditer(text)]
    hits += [Hit("student_code", start, end, value) for start, end, value in found]
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -(h.end - h.start))):
        if kept and hit.start < kept[-1].end:
            continue
        if hit.value.strip() not in allowed and hit.key not in allowed:
            kept.append(hit)
    return kept


def _mask(hit: Hit) -> str:
    """Enough shape to find the hit again, not enough to read it: ``j***@***.es``, ``******78Z``."""
    if hit.kind == "email":
        local, domain = hit.key.rsplit("@", 1)
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
    values = [v.strip() for v in allowed]
    # a value is allowed however it is written again: the prompt's plain address covers ``x [at] y.es``
    allow = frozenset(values) | {
        hit.key for v in values for hit in find_personal_data(v, student_code=student_code)
    }
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
