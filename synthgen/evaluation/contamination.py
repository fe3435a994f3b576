"""Contamination check: are the held-out questions really held out of the training data?

Splits are per seed, so a held-out seed's dialogues never reach train; but a seed can repeat another
in new words, a documents step can write a pair that restates a held-out answer, a real query can be
a question students asked the generator too. Before held-out and real-query numbers are trusted,
every evaluation question and its reference answer is compared with every **training** row of the
RUN_DIR (``sft`` train: every turn, the system turn included, which carries the facts under
``in_context``; ``prefs`` train: prompt, chosen and rejected):

    overlap(text) = share of the text's word n-grams (default 8) found in some training row

on casefolded, accent-folded words; a text shorter than n words counts as one n-gram (found or
not). A question's overlap is the larger of its text's and its reference's. Questions at or over
``threshold`` are flagged (a flag in ``questions.jsonl``, counted in the summary's ``flagged``)
and, with ``drop: true``, left out of the sets. ``EVAL_DIR/contamination.json``::

    {"n": 8, "threshold": 0.5, "drop": false,
     "sets": {"heldout": {"checked": 9, "flagged": ["heldout:x"]}, ...},
     "overlap": {"heldout:x": 0.83, ...}}

Paraphrases are not checked by default: their reference is a trained seed's answer by construction
(that set measures recall of what was trained; its questions pass the near-duplicate check instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from synthgen.evaluation.questions import Question, Sets
from synthgen.evaluation.recipe import Contamination
from synthgen.quality.text import folded_tokens
from synthgen.rundir import RunDir

__all__ = ["Contamination", "check_contamination", "training_texts"]


def training_texts(run_dir: Path) -> list[str]:
    """Every text a model trained on this RUN_DIR saw: sft train turns, prefs train prompt/chosen/rejected."""
    rd = RunDir(run_dir)
    texts: list[str] = []
    for row in rd.read_rows("sft", "train", columns=["messages"]):
        texts.extend(str(m["content"]) for m in row["messages"])
    for row in rd.read_rows("prefs", "train"):
        for column in ("prompt", "chosen", "rejected"):
            texts.extend(str(m["content"]) for m in row.get(column) or [])
    return texts


class _Index:
    """The training n-grams, and the training text as one folded string for texts shorter than n."""

    def __init__(self, texts: Iterable[str], n: int) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        lines = []
        for text in texts:
            tokens = folded_tokens(text)
            self.grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            lines.append(" ".join(tokens))
        self.blob = " " + " \n ".join(lines) + " "

    def overlap(self, text: str) -> float:
        tokens = folded_tokens(text)
        if not tokens:
            return 0.0
        if len(tokens) < self.n:
            return 1.0 if f" {' '.join(tokens)} " in self.blob else 0.0
        grams = [tuple(tokens[i : i + self.n]) for i in range(len(tokens) - self.n + 1)]
        return sum(g in self.grams for g in grams) / len(grams)


def check_contamination(
    sets: Sets, run_dir: Path, config: Contamination, texts: Sequence[str] | None = None
) -> tuple[Sets, dict[str, Any]]:
    """Flag (and with ``drop``, remove) the questions of the checked sets that overlap the training
    rows; the new sets and the ``contamination.json`` record. ``texts``: the training texts (default:
    :func:`training_texts` of ``run_dir``)."""
    index = _Index(training_texts(run_dir) if texts is None else texts, config.n)
    overlap: dict[str, float] = {}
    kept: list[Question] = []
    report: dict[str, dict[str, Any]] = {
        name: {"checked": 0, "flagged": []} for name in config.sets if name in sets.stats
    }
    dropped: dict[str, int] = {}
    for q in sets.questions:
        if q.set not in config.sets:
            kept.append(q)
            continue
        entry = report[q.set]
        entry["checked"] += 1
        value = max(index.overlap(q.text), index.overlap(q.reference) if q.reference else 0.0)
        overlap[q.id] = round(value, 4)
        if value < config.threshold:
            kept.append(q)
            continue
        entry["flagged"].append(q.id)
        flag = f"contaminated: {value:.0%} of its {config.n}-grams are in the training rows"
        if config.drop:
            sets.dropped.append({"id": q.id, "set": q.set, "text": q.text, "dropped": flag})
            dropped[q.set] = dropped.get(q.set, 0) + 1
        else:
            kept.append(dataclasses.replace(q, flags=(*q.flags, flag)))
    stats = {name: dict(s) for name, s in sets.stats.items()}
    for name, s in stats.items():
        mine = [q for q in kept if q.set == name]
        s["questions"], s["clusters"] = len(mine), len({q.cluster for q in mine})
        s["flagged"] = sum(bool(q.flags) for q in mine)
        s["dropped"] += dropped.get(name, 0)
    record = {
        "n": config.n,
        "threshold": config.threshold,
        "drop": config.drop,
        "sets": report,
        "overlap": overlap,
    }
    return Sets(questions=kept, stats=stats, dropped=sets.dropped), record
