"""The retrieval baseline: BM25 over the train seeds and the regulation chunks, for a ``rag`` candidate.

Fine-tuning's obvious rival is the same base model answering with the relevant seeds and regulation
articles in its context. A candidate with ``retrieve: {k: 4}`` gets, for each question, the top ``k``
passages of a BM25 index (``bm25s``, the ``eval`` extra) in its system turn, framed as the data
generator's teacher frames its facts (or as the published rows do, for an ``in_context`` recipe).

The index holds (1) the recipe's seeds of the RUN_DIR's **train** split only: a held-out seed in the
index would hand the baseline the very answer it is graded against; (2) the recipe's regulation
documents (those its ``documents`` steps read and those its seeds cite), cut exactly as the
documents generator cuts them (:func:`synthgen.generators.chunking.chunk`).

Tokenisation (measured in ``benchmarks/retrieval.py``, figures in docs/study.md): casefolded,
accent-folded words, stop words dropped, Snowball-stemmed (PyStemmer), so "matricula", "matrícula"
and "matricularme" are one term; a language without a stemmer keeps the folded words. Folding is
what matters (recall@1 of paraphrases typed without accents: 60% plain lowercase, 69% folded);
stemming adds a point or two of recall@4, the k a candidate uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synthgen.errors import ConfigError
from synthgen.generators.chunking import chunk, load_document
from synthgen.quality.text import STOPWORDS, strip_accents, tokenize
from synthgen.recipe import Recipe
from synthgen.seeds import Seed

__all__ = [
    "TOKENIZATIONS",
    "Passage",
    "RetrievalTurn",
    "Retriever",
    "build_retriever",
    "recipe_documents",
    "seed_passages",
]

Tokenization = Literal["lower", "folded", "stopwords", "stemmed"]
TOKENIZATIONS: tuple[Tokenization, ...] = ("lower", "folded", "stopwords", "stemmed")
_STEMMERS = {
    "es": "spanish", "en": "english", "ca": "catalan", "pt": "portuguese", "fr": "french",
    "it": "italian", "de": "german", "eu": "basque",
}  # fmt: skip
_HINT = "pip install 'synthgen[eval]' (bm25s and PyStemmer)"


@dataclass(frozen=True)
class Passage:
    """One retrievable text: ``seed:<id>`` (question and answer) or ``doc:<file>#<chunk>``."""

    id: str
    title: str
    text: str

    def fact(self) -> str:
        """As a ``<fact>`` of the teacher's ``<facts>`` block (see :func:`synthgen.grounding.facts_block`)."""
        kind = "question" if self.id.startswith("seed:") else "source"
        return f'<fact {kind}="{self.title.replace(chr(34), chr(39))}">\n{self.text}\n</fact>'


def seed_passages(seeds: Iterable[Seed], splits: Mapping[str, str]) -> list[Passage]:
    """The seeds of the train split; a seed the RUN_DIR's splits do not know is left out, like a test one."""
    return [Passage(f"seed:{s.id}", s.question, s.answer) for s in seeds if splits.get(s.id) == "train"]


def recipe_documents(recipe: Recipe) -> list[Path]:
    """The regulation documents of a recipe: its ``documents`` steps' files, then those its seeds cite
    (``source.document``, relative to the seeds file) that exist; each once."""
    found: dict[Path, None] = {}
    for step in recipe.steps:
        paths = getattr(recipe.generator(step), "document_paths", None)
        if step.generator == "documents" and callable(paths):
            found.update(dict.fromkeys(Path(p).resolve() for p in paths()))
    folders = [Path(s).resolve().parent for s in recipe.seeds]
    for seed in recipe.loaded_seeds:
        if seed.source is None:
            continue
        for folder in folders:
            if (folder / seed.source.document).is_file():
                found.setdefault((folder / seed.source.document).resolve(), None)
                break
    return list(found)


def document_passages(paths: Sequence[Path], max_chars: int = 2500) -> list[Passage]:
    """Article-sized chunks, as the documents generator cuts them (its default ``max_chars``)."""
    passages = []
    for path in paths:
        document = load_document(path)
        for piece in chunk(document, max_chars=max_chars):
            title = f"{document.title}, {piece.article}" if piece.article else document.title
            passages.append(Passage(f"doc:{path.name}#{piece.index}", title, piece.text))
    return passages


@functools.lru_cache(maxsize=8)
def _stemmer(language: str) -> Callable[[list[str]], list[str]] | None:
    name = _STEMMERS.get(language)
    if name is None:
        return None
    try:
        import Stemmer
    except ImportError:
        raise ConfigError("retrieval needs PyStemmer", field="retrieve", hint=_HINT) from None
    stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer(name).stemWords
    return stem


def analyze(text: str, tokenization: Tokenization = "stemmed", language: str = "es") -> list[str]:
    """The terms of ``text`` under one tokenisation (see the module doc); the same for passages and
    queries."""
    tokens = tokenize(text)  # casefolded, NFC, accents kept
    if tokenization == "lower":
        return tokens
    tokens = [strip_accents(t) for t in tokens]
    if tokenization != "folded":
        tokens = [t for t in tokens if t not in STOPWORDS]
    stem = _stemmer(language) if tokenization == "stemmed" else None
    # folded before stemming: Snowball stems "matrícula" and "matricula" alike only then (measured:
    # stemming the accented forms lost 1 point of recall@4 on paraphrases typed without accents)
    return stem(tokens) if stem is not None else tokens


class Retriever:
    """A BM25 index over passages; :meth:`search` gives the top ``k`` for a query."""

    def __init__(
        self, passages: Sequence[Passage], *, language: str = "es", tokenization: Tokenization = "stemmed"
    ) -> None:
        try:
            import bm25s
        except ImportError:
            raise ConfigError("retrieval needs bm25s", field="retrieve", hint=_HINT) from None
        if not passages:
            raise ConfigError(
                "nothing to retrieve: no train-split seed and no regulation document",
                field="retrieve",
                hint="check the eval recipe's run_dir (its splits) and the recipe's seeds",
            )
        self.passages, self.language, self.tokenization = list(passages), language, tokenization
        self._index: Any = bm25s.BM25()
        corpus = [self._terms(f"{p.title}\n{p.text}") for p in self.passages]
        self._index.index(corpus, show_progress=False)

    def _terms(self, text: str) -> list[str]:
        return analyze(text, self.tokenization, self.language) or [""]  # "": bm25s's empty token

    def search(self, query: str, k: int) -> list[Passage]:
        """The ``k`` best passages, best first (fewer when the index is smaller); none for a query
        that shares no term with any passage."""
        k = min(k, len(self.passages))
        ids, scores = self._index.retrieve([self._terms(query)], k=k, show_progress=False)
        return [self.passages[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def context(self, query: str, k: int) -> str:
        """The top ``k`` as a ``<facts>`` block: what a retrieval candidate sees in its system turn."""
        return "<facts>\n" + "\n".join(p.fact() for p in self.search(query, k)) + "\n</facts>"

    def describe(self) -> dict[str, Any]:
        seeds = sum(p.id.startswith("seed:") for p in self.passages)
        return {"seeds": seeds, "chunks": len(self.passages) - seeds, "tokenization": self.tokenization}


@dataclass(frozen=True)
class RetrievalTurn:
    """A retrieval candidate's system turn: the top ``k`` passages for the conversation's user turns
    (all of them: a follow-up such as "¿y el plazo?" says little alone), put into ``frame``."""

    retriever: Retriever
    k: int
    frame: Callable[[str], str]

    def __call__(self, turns: Sequence[Mapping[str, Any]]) -> str:
        query = "\n".join(str(m["content"]) for m in turns if m["role"] == "user")
        return self.frame(self.retriever.context(query, self.k))

    def describe(self) -> dict[str, Any]:
        return {"k": self.k, **self.retriever.describe()}


def build_retriever(
    recipe: Recipe, splits: Mapping[str, str], documents: Sequence[Path] | None = None
) -> Retriever:
    """The index a retrieval candidate searches: the train seeds and the documents (default: the
    recipe's, :func:`recipe_documents`)."""
    docs = recipe_documents(recipe) if documents is None else list(documents)
    passages = [*seed_passages(recipe.loaded_seeds, splits), *document_passages(docs)]
    return Retriever(passages, language=recipe.language)
