"""Regulation documents, loaded and cut into article-sized chunks for the documents generator.

Why articles: a student's question is usually answered by one article, and a seed cites its article
so a reviewer can check it; a chunk that mixes articles would blur that citation. Markdown splits on
``##``/``###`` headings (each labelled with its heading); plain text and PDFs (no headings survive PDF
text extraction) split on lines that start an article (``Artículo 3.``, ``Art. 3``, ``Article 3``).
A section longer than ``max_chars`` is cut at paragraph boundaries (then lines, sentences, words)
and every piece repeats the heading, so each chunk still says which article it comes from.

Decisions: text before the first heading or article line is front matter (title, notes,
disclaimers) and is not chunked when the document has sections at all; a document without any is
chunked by size alone, with no article label. Chunking is a pure function of the text: the same
document always gives the same chunks, so work-item ids and cached calls stay stable.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synthgen.errors import ConfigError
from synthgen.textfiles import read_text

__all__ = ["DOCUMENT_SUFFIXES", "Chunk", "Document", "chunk", "load_document", "unwrap"]

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".pdf")
_MARKDOWN = (".md", ".markdown")
_HEADING = re.compile(r"^(#{2,3})[ \t]+(.+?)[ \t#]*$")
_TITLE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Capitalised on purpose: a wrapped line that starts "artículo 5 de la Ley" is a reference, not a
# boundary; and the number must end the heading (punctuation or end of line), not start a phrase.
_ARTICLE = re.compile(
    r"^[ \t]*[#*_]*[ \t]*(?:Art[íi]culo|ART[ÍI]CULO|Art\.|ART\.|Article|ARTICLE)[ \t]*"
    r"(?:\d+|[IVXLC]+\b|[úu]nico|[ÚU]NICO)[ \t]*(?:bis\b)?[ \t]*(?:[º°ª.:)\-–—]|$)"
)
_LABEL_MAX = 120
_BLOCK_START = re.compile(r"^\s*(?:#|>|[-*+•]\s|\d+[.)º]\s|[a-z][.)]\s|\|)")
# Coarse to fine: a piece too long at one level is cut at the next; each level's pieces are rejoined
# with its own separator, so a chunk's text reads like the original.
_LEVELS = (
    ("\n\n", re.compile(r"\n[ \t]*\n")),
    ("\n", re.compile(r"\n")),
    (" ", re.compile(r"(?<=[.;:!?])\s+")),
    (" ", re.compile(r"\s+")),
)


@dataclass(frozen=True)
class Document:
    """A regulation's text as loaded; ``title`` names it in prompts."""

    path: Path
    text: str
    title: str

    @property
    def is_markdown(self) -> bool:
        return self.path.suffix.lower() in _MARKDOWN


@dataclass(frozen=True)
class Chunk:
    """One article (or piece of one): ``article`` is its heading, ``None`` when the document has none."""

    document: Document
    article: str | None
    text: str
    index: int


def load_document(path: str | Path) -> Document:
    """Read a .md/.markdown/.txt (UTF-8, else cp1252) or text .pdf; problems raise ``ConfigError``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError("document not found", path=path, hint="paths are relative to the recipe file")
    if suffix not in DOCUMENT_SUFFIXES:
        hint = "use " + ", ".join(DOCUMENT_SUFFIXES) + "; save a .docx as PDF or Markdown"
        raise ConfigError(f"unsupported document type {suffix or '(no extension)'!r}", path=path, hint=hint)
    text, pdf_title = _read_pdf(path) if suffix == ".pdf" else (_read_text(path), None)
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    text = text.replace("\u00a0", " ").strip()
    if not text:
        if suffix == ".pdf":
            raise ConfigError(
                "PDF has no extractable text",
                path=path,
                hint="scanned PDFs need OCR first (e.g. ocrmypdf), or convert it to Markdown",
            )
        raise ConfigError(
            "document is empty", path=path, hint="write the regulation's text into it, or stop naming it"
        )
    return Document(path=path, text=text, title=pdf_title or _title(text, path))


def chunk(document: Document, *, max_chars: int = 2500) -> list[Chunk]:
    """Article-sized chunks of ``document``, each at most ``max_chars`` long (see the module doc)."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    sections = _markdown_sections(document.text) if document.is_markdown else []
    if not sections:
        sections = _article_sections(document.text)
    chunks: list[Chunk] = []
    for label, heading, body in sections:
        prefix = f"{heading}\n\n" if heading else ""
        if not body and heading and len(heading) > _LABEL_MAX:  # text extraction glued body to heading
            prefix, body = "", heading
        elif not body:
            continue  # a bare heading ("Capítulo II" before its first article)
        for part in _split(body, max(1, max_chars - len(prefix))):
            chunks.append(Chunk(document=document, article=label, text=prefix + part, index=len(chunks)))
    return chunks


# -- reading ------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """UTF-8 (BOM optional); Word's "plain text" export on Windows is often cp1252. A bad byte or a NUL
    (a binary or UTF-16 file named .txt) is reported by line and column."""
    return read_text(path, ConfigError, fallback="cp1252")


_DECRYPT = (
    "save an unencrypted copy: `qpdf --decrypt in.pdf out.pdf` (add --password=... if it asks for one), "
    "or open it and print or export it to a new PDF"
)


def _read_pdf(path: Path) -> tuple[str, str | None]:
    """Page texts joined by blank lines (a page break is a safe place to cut), and the PDF's title.

    pypdf reports what it repairs through logging and warnings, which would print on the user's
    terminal; they are collected instead and quoted only when the PDF turns out unreadable.
    """
    import pypdf  # imported here: only documents steps with PDFs pay for it
    from pypdf.errors import DependencyError

    with _collect_pypdf_notes() as notes:
        reader = None
        try:
            reader = pypdf.PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):
                raise ConfigError("PDF is encrypted with a password", path=path, hint=_DECRYPT)
            pages = [page.extract_text() or "" for page in reader.pages]
            title = (reader.metadata.title if reader.metadata else None) or None
        except ConfigError:
            raise
        except DependencyError:  # AES needs an optional package of pypdf's: the file is what is locked
            raise ConfigError(
                "PDF is encrypted (AES), so its text cannot be read",
                path=path,
                hint=_DECRYPT + "; installing the 'cryptography' package lets pypdf open AES PDFs "
                "that need no password",
            ) from None
        except Exception as exc:  # pypdf raises many kinds (PdfReadError, KeyError, ...) on damaged files
            encrypted = reader is not None and reader.is_encrypted
            detail = f"; pypdf noted: {notes[0]}" if notes else ""
            raise ConfigError(
                f"PDF is encrypted and could not be decrypted: {exc}"
                if encrypted
                else f"is not a readable PDF: {exc}{detail}",
                path=path,
                hint=_DECRYPT if encrypted else "re-export it from the original document",
            ) from None
    return "\n\n".join(p.strip() for p in pages), (title.strip() if isinstance(title, str) else None) or None


@contextlib.contextmanager
def _collect_pypdf_notes() -> Iterator[list[str]]:
    """pypdf's log records and warnings while reading, collected instead of printed."""
    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = logging.getLogger("pypdf")
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [_Collect()], False
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
        notes.extend(str(w.message) for w in caught)
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _title(text: str, path: Path) -> str:
    for line in text.split("\n"):
        if match := _TITLE.match(line):
            return _clean(match.group(1))
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return _clean(first) if 0 < len(first) <= _LABEL_MAX and not _ARTICLE.match(first) else path.stem


# -- splitting ----------------------------------------------------------------------------------------

Section = tuple[str | None, str | None, str]  # (article label, heading line repeated in pieces, body)


def _markdown_sections(text: str) -> list[Section]:
    """Sections under ``##``/``###`` headings (headings inside code fences do not count)."""
    sections: list[tuple[str, str, list[str]]] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.append((_clean(match.group(2)), line.strip(), []))
        elif sections:
            sections[-1][2].append(line)
    return [
        (label, heading, body) for label, heading, lines in sections if (body := "\n".join(lines).strip())
    ]


def _article_sections(text: str) -> list[Section]:
    """Sections starting at article lines; the whole text as one unlabelled section if there are none."""
    sections: list[tuple[str, str, list[str]]] = []
    for line in text.split("\n"):
        if _ARTICLE.match(line):
            sections.append((_label(line), line.strip(), []))
        elif sections:
            sections[-1][2].append(line)
    if not sections:
        return [(None, None, text.strip())]
    return [(label, heading, "\n".join(lines).strip()) for label, heading, lines in sections]


def _split(text: str, budget: int, level: int = 0) -> list[str]:
    """Pieces of ``text`` of at most ``budget`` chars, cut at the coarsest boundary that fits."""
    text = text.strip()
    if len(text) <= budget:
        return [text]
    if level == len(_LEVELS):
        return [text[i : i + budget] for i in range(0, len(text), budget)]
    joiner, pattern = _LEVELS[level]
    units = [
        piece for unit in pattern.split(text) if unit.strip() for piece in _split(unit, budget, level + 1)
    ]
    parts: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= budget:
            current = candidate
        else:
            parts.append(current)
            current = unit
    parts.append(current)
    return parts


def unwrap(text: str) -> str:
    """Join hard-wrapped lines of each paragraph, keeping headings, list items, quotes and tables.

    Why: Markdown soft breaks and PDF line ends are layout, not meaning; a sentence cut across lines
    reads as two fragments to anything that splits on lines (the offline provider does).
    """
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        joinable = out and out[-1].strip() and stripped and not _BLOCK_START.match(line)
        if joinable and not _HEADING.match(out[-1]) and not _ARTICLE.match(out[-1]):
            out[-1] = f"{out[-1].rstrip()} {stripped}"
        else:
            out.append(line.rstrip())
    return "\n".join(out)


def _clean(heading: str) -> str:
    """A heading without Markdown emphasis markers."""
    return re.sub(r"\s+", " ", re.sub(r"(\*\*|__|\*|`)", "", heading)).strip()


def _label(line: str) -> str:
    label = _clean(line.lstrip("#").strip())
    if len(label) > _LABEL_MAX:  # text extraction glued the article's first sentence to its heading
        label = label[:_LABEL_MAX].rsplit(" ", 1)[0] + "…"
    return label
