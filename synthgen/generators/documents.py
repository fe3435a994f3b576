"""The ``documents`` generator: new seed Q&A pairs from a faculty's regulation documents.

Why: writing seeds by hand is the bottleneck; the regulations already hold the facts. Each chunk
(one article, see :mod:`synthgen.generators.chunking`) becomes one work item, and the model writes questions a
student would really ask with self-contained answers taken only from that chunk. Every seed cites its
document and article, so a reviewer can check it before the seeds feed the dialogue steps.

A question that nearly repeats an existing seed (or an earlier question of the same chunk) is
dropped: token Jaccard >= 0.8 after casefolding, with accented letters kept inside words, so
"matrícula" stays one token. A chunk whose every question is dropped is rejected
(``duplicate_of_existing_seeds``), never silently empty.
"""

from __future__ import annotations

import glob
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from synthgen.determinism import item_seed
from synthgen.errors import ConfigError
from synthgen.generators.base import Generator, GeneratorContext, Rejected, WorkItem
from synthgen.generators.chunking import DOCUMENT_SUFFIXES, chunk, load_document, unwrap
from synthgen.seeds import Seed

__all__ = [
    "DocumentsGenerator",
    "QAPair",
    "QAPairs",
    "jaccard",
    "question_tokens",
    "slugify",
]

DUPLICATE_JACCARD = 0.8
_FIELD = "steps[].config.documents"
_TOKEN = re.compile(r"\w+")  # str patterns are Unicode-aware: "matrícula" is one token
_GLOB = re.compile(r"[*?\[]")
_ARTICLE_REF = re.compile(r"\b(?:art[íi]culo|art\.|article)\s*\d+", re.IGNORECASE)


class QAPair(BaseModel):
    """One question and its answer. Field names follow the offline protocol: ``question`` gets a
    question, ``answer`` gets sentences of the ``<facts>`` block."""

    question: str = Field(description="the question as a student would ask it")
    answer: str = Field(description="a self-contained answer using only the text, citing the article")
    article: str | None = Field(description="the article the answer comes from, as written in the text")


class QAPairs(BaseModel):
    pairs: list[QAPair]


Pattern = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class DocumentsGenerator(Generator):
    """Seeds from regulation documents: one work item per article-sized chunk."""

    name = "documents"
    version = "1"
    output = "seeds"
    card_method = (
        "Question/answer extraction: the faculty's regulation documents are chunked and a model writes "
        "seed Q&A pairs grounded in each chunk (`generated/seeds.jsonl`)."
    )
    description = "new seed Q&A pairs from regulation documents (Markdown, text, PDF), citing the article"
    path_fields: ClassVar[tuple[str, ...]] = ("documents",)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        documents: list[Pattern] = Field(min_length=1, description="paths or glob patterns (.md, .txt, .pdf)")
        profile: str = Field(default="assistant", description="the model profile that writes the pairs")
        per_chunk: int = Field(default=3, ge=1, le=20, description="questions asked per chunk")
        topic: str | None = Field(default=None, description="topic of the new seeds; default: the file name")
        max_chars: int = Field(default=2500, ge=200, le=100_000, description="longest chunk, in characters")

        @field_validator("documents", mode="before")
        @classmethod
        def _one_pattern(cls, value: object) -> object:
            """``documents: docs/*.md`` is as natural as a one-item list."""
            return [value] if isinstance(value, str) else value

    config: Config

    def profiles_used(self) -> list[str]:
        return [self.config.profile]

    def prompt_roles(self) -> list[str]:
        return ["documents_qa"]

    def inputs(self) -> list[Path]:
        return self.document_paths()

    def document_paths(self) -> list[Path]:
        """Every file the patterns name, in order (a glob's matches sorted), each once."""
        found: dict[Path, None] = {}
        for pattern in self.config.documents:
            if _GLOB.search(pattern):
                matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
                matches = [p for p in matches if p.suffix.lower() in DOCUMENT_SUFFIXES]
                if not matches:
                    raise ConfigError(
                        f"{pattern!r} matches no document",
                        field=_FIELD,
                        hint="paths are relative to the recipe file; documents are "
                        + ", ".join(DOCUMENT_SUFFIXES),
                    )
            else:
                if not Path(pattern).is_file():
                    raise ConfigError(
                        f"{pattern!r}: file not found",
                        field=_FIELD,
                        hint="paths are relative to the recipe file",
                    )
                matches = [Path(pattern)]
            found.update(dict.fromkeys(matches))
        return list(found)

    def plan(
        self,
        seeds: Sequence[Seed],
        splits: Mapping[str, str],
        recipe_seed: int,
        step: str,
        upstream: Sequence[Mapping[str, Any]] = (),
    ) -> list[WorkItem]:
        """One item per chunk, id ``<document stem>/<chunk index>``; new seeds all go to train."""
        items: list[WorkItem] = []
        stems: dict[str, Path] = {}
        for path in self.document_paths():
            stem = slugify(path.stem)
            if stem in stems:
                raise ConfigError(
                    f"{path} and {stems[stem]} share the name {stem!r}",
                    field=_FIELD,
                    hint="rename one: seed ids and work items are named after the file",
                )
            stems[stem] = path
            document = load_document(path)
            topic = self.config.topic or re.sub(r"[-_\s]+", " ", path.stem).strip()
            for piece in chunk(document, max_chars=self.config.max_chars):
                item_id = f"{stem}/{piece.index}"
                payload = {
                    "stem": stem,
                    "document": self._cite(path),
                    "title": document.title,
                    "topic": topic,
                    "article": piece.article,
                    "index": piece.index,
                    "text": piece.text,
                }
                items.append(
                    WorkItem(
                        id=item_id,
                        seed_ids=(),
                        split="train",
                        rng_seed=item_seed(recipe_seed, step, item_id),
                        payload=payload,
                    )
                )
        return items

    async def generate(self, item: WorkItem, ctx: GeneratorContext) -> list[dict[str, Any]]:
        p = item.payload
        article = p["article"]
        prompt = ctx.prompts.render(
            "documents_qa",
            n=self.config.per_chunk,
            document=p["title"],
            article=article or "—",
            subject=_subject(article or p["title"]),
            facts=unwrap(p["text"]),
        )
        completion = await ctx.complete(
            [{"role": "user", "content": prompt}],
            profile=self.config.profile,
            schema=QAPairs,
            call="question writer",
        )
        pairs: list[QAPair] = completion.parsed.pairs[: self.config.per_chunk]
        existing = [question_tokens(s.question) for s in ctx.seeds.values()]
        kept: list[frozenset[str]] = []
        rows: list[dict[str, Any]] = []
        duplicates = 0
        for k, pair in enumerate(pairs):
            question, answer = pair.question.strip(), pair.answer.strip()
            tokens = question_tokens(question)
            if not tokens or not answer:
                continue
            if any(jaccard(tokens, other) >= DUPLICATE_JACCARD for other in (*existing, *kept)):
                duplicates += 1
                continue
            kept.append(tokens)
            named = pair.article.strip() if pair.article and _ARTICLE_REF.search(pair.article) else None
            cited = article or named  # the chunk's heading is ground truth; the model's only fills a gap
            row = {
                "id": f"{p['stem']}-{p['index']}-{k}",
                "topic": p["topic"],
                "question": question,
                "answer": answer,
                "language": ctx.language,
                "source": {"document": p["document"], "article": cited},
                "tags": ["generated"],
            }
            Seed.model_validate(row)  # a row the seeds loader would refuse is a bug here, not later
            rows.append(row)
        if not rows:
            if duplicates:
                detail = f"all {duplicates} questions repeat existing seeds"
                raise Rejected("duplicate_of_existing_seeds", detail)
            raise Rejected("no_pairs", "the model returned no usable question and answer")
        return rows

    def _cite(self, path: Path) -> str:
        """The document as a seed cites it (and ``publish`` uploads it): relative to the recipe's folder,
        or by file name alone when it lies outside, so no local directory ever leaves the machine."""
        base = self.base_dir if self.base_dir is not None else Path.cwd()
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return path.name


def slugify(text: str) -> str:
    """ASCII id fragment: "Normativa Matrícula" -> "normativa-matricula" (seed ids allow no accents)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "document"


def question_tokens(text: str) -> frozenset[str]:
    """Casefolded word tokens; accented letters stay inside their word."""
    return frozenset(_TOKEN.findall(unicodedata.normalize("NFC", text).casefold()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _subject(label: str) -> str:
    """What an article is about, for the example question: its title without "Artículo 3."."""
    title = re.sub(r"^\s*(?:art[íi]culo|art\.|article)\s*\S+?[.:º°)\-–—]*\s+", "", label, flags=re.IGNORECASE)
    title = re.sub(r"[.?!¿<>\n]+", " ", title or label).strip()
    return title[:1].lower() + title[1:] if title[1:2].islower() else title
