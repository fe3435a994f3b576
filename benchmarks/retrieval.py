"""Retrieval recall: does the retrieval baseline find the right seed for a question in new words?

The ``rag`` candidate of an eval recipe (:mod:`synthgen.evaluation.retrieval`) retrieves the top k
passages of a BM25 index. This measures, for each tokenisation, recall@k of the right seed (the one
the question paraphrases) over the 93 shipped seeds (``seeds/faculty-sciences-es``):

* queries: ``benchmarks/data/paraphrases-es.tsv``, one hand-written paraphrase per seed (other
  words, other order, some accents dropped, as students type); the same with every accent dropped
  (``unaccented``); and, as a ceiling, the seed questions themselves;
* index: every seed (question + answer) alone, and every seed plus the chunks of the three
  regulation documents (``seeds/faculty-sciences-es/documents``, cut as the documents generator
  cuts them): chunks compete with seeds for the k places, as in evaluation.

    python -m benchmarks.retrieval                 # a second on 2 cores; Markdown table on stdout
    python -m benchmarks.retrieval --json out.json

In evaluation the index holds the train split only; here every seed is in it, so that each
paraphrase has its seed to find.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from synthgen.evaluation.retrieval import (
    TOKENIZATIONS,
    Passage,
    Retriever,
    document_passages,
    seed_passages,
)
from synthgen.quality.text import strip_accents
from synthgen.seeds import load_seeds

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds" / "faculty-sciences-es"
PARAPHRASES = Path(__file__).resolve().parent / "data" / "paraphrases-es.tsv"
KS = (1, 4)
SETS = ("paraphrases", "unaccented", "questions")


def read_paraphrases(path: Path = PARAPHRASES) -> list[tuple[str, str]]:
    """(seed id, paraphrase) pairs; ``#`` lines are comments."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            seed_id, text = line.split("\t", 1)
            rows.append((seed_id, text.strip()))
    return rows


def recall(retriever: Retriever, queries: list[tuple[str, str]], k: int) -> float:
    """Share of queries whose seed is among the top ``k`` passages."""
    hits = sum(any(p.id == f"seed:{sid}" for p in retriever.search(q, k)) for sid, q in queries)
    return hits / len(queries)


def measure() -> list[dict[str, object]]:
    seeds = load_seeds(SEEDS / "seeds.yaml")
    everything = seed_passages(seeds, {s.id: "train" for s in seeds})
    chunks = document_passages(sorted((SEEDS / "documents").glob("*.md")))
    known = {s.id for s in seeds}
    paraphrases = read_paraphrases()
    missing = sorted({sid for sid, _ in paraphrases} - known)
    if missing:
        raise SystemExit(f"{PARAPHRASES}: unknown seed ids {missing}")
    originals = [(s.id, s.question) for s in seeds]
    unaccented = [(sid, strip_accents(q)) for sid, q in paraphrases]  # as typed on a phone
    rows: list[dict[str, object]] = []
    indexes: dict[str, list[Passage]] = {"seeds": everything, "seeds+documents": [*everything, *chunks]}
    for index_name, passages in indexes.items():
        for tokenization in TOKENIZATIONS:
            started = time.perf_counter()
            retriever = Retriever(passages, language="es", tokenization=tokenization)
            row: dict[str, object] = {
                "index": index_name,
                "passages": len(passages),
                "tokenization": tokenization,
            }
            for name, queries in zip(SETS, (paraphrases, unaccented, originals), strict=True):
                for k in KS:
                    row[f"{name}@{k}"] = recall(retriever, queries, k)
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = measure()
    columns = [f"{n}@{k}" for n in SETS for k in KS]
    print(f"| index | passages | tokenization | {' | '.join(columns)} |")
    print("|---|---|---|" + "---|" * len(columns))
    for row in rows:
        cells = " | ".join(f"{float(row[c]):.1%}" for c in columns)  # type: ignore[arg-type]
        print(f"| {row['index']} | {row['passages']} | {row['tokenization']} | {cells} |")
    print(
        f"\n{len(read_paraphrases())} paraphrases, one per seed ({PARAPHRASES.relative_to(ROOT)})",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
