"""Trusting the judge: human calibration (a blinded labelling sheet, agreement with the judge's
verdicts) and a warning when the judge is the model that labelled the preference pairs.

An LLM judge is an instrument: before trusting its numbers, a few people at the faculty label a
sample and we measure agreement, as MT-Bench did against expert votes.

The sheet (``synthgen evaluate EVAL --export-labels FILE``) is a CSV with one row per question and
pair of candidates (one row per question with a single candidate), columns:

``item_id``          stable id of the row (do not edit)
``set``              question set: paraphrases, heldout, out_of_scope, real
``question``         the student's question
``reference``        the office's answer (empty for out-of-scope and real queries)
``answer_a``         one candidate's answer; which model is hidden, and the order is randomised per
``answer_b``         item from the eval recipe's seed (empty with a single candidate)
``human_score_a``    to fill: 1-10 for answer_a (same scale as the judge's single grading)
``human_score_b``    to fill: 1-10 for answer_b
``human_preference`` to fill: ``a``, ``b`` or ``tie``

Leave a cell empty to skip it. The hidden order is a function of ``item_id`` and the seed, so
``--calibrate LABELS.csv`` on the same eval recipe maps each row back to its models without a key file.
It reports agreement on preferences with and without ties (MT-Bench style: ``without`` counts only
items where neither the human nor the judge said tie), linearly and quadratically weighted Cohen's
kappa between human and judge scores, the judge's order-swap consistency on the labelled items, and n.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from synthgen.determinism import item_seed
from synthgen.errors import ConfigError
from synthgen.evaluation.stats import pairwise_outcomes, weighted_kappa
from synthgen.llm.offline import OFFLINE_MODEL_SUFFIX

__all__ = ["LABEL_COLUMNS", "LabelItem", "calibrate", "export_labels", "judge_warnings", "label_items"]

LABEL_COLUMNS = (
    "item_id",
    "set",
    "question",
    "reference",
    "answer_a",
    "answer_b",
    "human_score_a",
    "human_score_b",
    "human_preference",
)


@dataclass(frozen=True)
class LabelItem:
    """One sheet row: ``a``/``b`` are the (hidden) candidate names in the sheet's order."""

    item_id: str
    set: str
    question_id: str
    question: str
    reference: str
    a: str
    b: str | None

    def pair(self) -> tuple[str, str] | None:
        """(x, y) in the eval's candidate order, as pairwise judgments are keyed; ``None`` if single."""
        return None if self.b is None else (self.a, self.b)


def label_items(
    questions: Sequence[Mapping[str, Any]],
    answers: Mapping[tuple[str, str], str],
    candidates: Sequence[str],
    seed: int,
) -> list[LabelItem]:
    """Items for every question and pair of candidates that both answered; blinded order per item."""
    items: list[LabelItem] = []
    for q in questions:
        answered = [c for c in candidates if (c, q["id"]) in answers]
        groups: list[tuple[str, ...]] = (
            list(combinations(answered, 2)) if len(candidates) > 1 else [(c,) for c in answered]
        )
        for group in groups:
            item_id = hashlib.sha256("\x1f".join([q["id"], *group]).encode()).hexdigest()[:12]
            if len(group) == 2 and item_seed(seed, "labels", item_id) % 2 == 1:
                group = group[::-1]
            items.append(
                LabelItem(
                    item_id=item_id,
                    set=q["set"],
                    question_id=q["id"],
                    question=q["text"],
                    reference=q.get("reference") or "",
                    a=group[0],
                    b=group[1] if len(group) == 2 else None,  # one candidate: graded alone
                )
            )
    return items


def export_labels(path: Path, items: Sequence[LabelItem], answers: Mapping[tuple[str, str], str]) -> Path:
    """Write the blinded sheet (UTF-8 with BOM, so spreadsheet programs open accents correctly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        for item in items:
            writer.writerow(
                {
                    "item_id": item.item_id,
                    "set": item.set,
                    "question": item.question,
                    "reference": item.reference,
                    "answer_a": answers[(item.a, item.question_id)],
                    "answer_b": answers[(item.b, item.question_id)] if item.b else "",
                    "human_score_a": "",
                    "human_score_b": "",
                    "human_preference": "",
                }
            )
    return path


def _score(value: str, path: Path, line: int, column: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        score = int(float(value))
    except ValueError:
        score = 0
    if not 1 <= score <= 10 or float(value) != score:
        raise ConfigError(f"{value!r} is not a score from 1 to 10", path=path, line=line, field=column)
    return score


def calibrate(
    path: Path,
    items: Sequence[LabelItem],
    records: Sequence[Mapping[str, Any]],
    candidates: Sequence[str],
) -> dict[str, Any]:
    """Agreement between the filled sheet at ``path`` and the judge's verdicts in ``records``."""
    by_id = {item.item_id: item for item in items}
    order = {name: i for i, name in enumerate(candidates)}
    outcomes = pairwise_outcomes(records)
    judge_scores = {
        (r["candidate"], r["question_id"]): int(r["verdict"]["score"])
        for r in records
        if r["mode"] == "single" and r["verdict"] is not None
    }
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot read the labels: {exc.strerror}", path=path) from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [
            c
            for c in ("item_id", "human_score_a", "human_score_b", "human_preference")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ConfigError(
                f"missing column(s) {', '.join(missing)}",
                path=path,
                line=1,
                hint="fill in the sheet written by --export-labels; keep its header",
            )
        human_pref: list[str] = []
        judge_pref: list[str] = []
        human_scores: list[int] = []
        judged_scores: list[int] = []
        consistent: list[bool] = []
        rows = unknown = 0
        for row in reader:
            line = reader.line_num
            item = by_id.get((row.get("item_id") or "").strip())
            if item is None:
                unknown += 1
                continue
            rows += 1
            for column, name in (("human_score_a", item.a), ("human_score_b", item.b)):
                human = _score(row.get(column) or "", path, line, column)
                judged = judge_scores.get((name, item.question_id)) if name else None
                if human is not None and judged is not None:
                    human_scores.append(human)
                    judged_scores.append(judged)
            pair = item.pair()
            if pair is None:
                continue
            x, y = sorted(pair, key=order.__getitem__)
            found = outcomes.get((item.set, item.question_id, x, y))
            if found is None or found["winner"] is None:
                continue
            preference = (row.get("human_preference") or "").strip().lower()
            if not preference:
                continue
            if preference not in ("a", "b", "tie"):
                raise ConfigError(
                    f"{preference!r} is not a preference",
                    path=path,
                    line=line,
                    field="human_preference",
                    hint="write a, b or tie",
                )
            consistent.append(bool(found["consistent"]))
            human_pref.append({"a": item.a, "b": item.b}.get(preference, "tie") or "tie")
            judge_pref.append({"x": x, "y": y}.get(found["winner"], "tie"))
    pairs = list(zip(human_pref, judge_pref, strict=True))
    decided = [(h, j) for h, j in pairs if h != "tie" and j != "tie"]
    return {
        "labels": str(path),
        "rows": rows,
        "unknown_items": unknown,
        "preference": {
            "n": len(pairs),
            "accuracy_with_ties": _share(h == j for h, j in pairs),
            "n_without_ties": len(decided),
            "accuracy_without_ties": _share(h == j for h, j in decided),
        },
        "scores": {
            "n": len(human_scores),
            "kappa_linear": _round(weighted_kappa(human_scores, judged_scores, weights="linear")),
            "kappa_quadratic": _round(weighted_kappa(human_scores, judged_scores, weights="quadratic")),
        },
        "judge_order_consistency": {"n": len(consistent), "rate": _share(consistent)},
    }


def _share(flags: Any) -> float | None:
    values = list(flags)
    return round(sum(values) / len(values), 6) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _model_name(model: str) -> str:
    return model.lower().rsplit("/", 1)[-1].removesuffix(f"-{OFFLINE_MODEL_SUFFIX}")


def _family(model: str) -> str:
    found = re.match(r"[a-z]+", _model_name(model))
    return found.group(0) if found else model


def judge_warnings(judge_model: str, labelling_models: Iterable[str], run_dir: Path) -> list[str]:
    """Warn when the judge labelled the preference pairs: DPO optimised the model towards its taste, so
    that judge favours it. ``labelling_models``: the prefs rows' ``judge_model`` and the recipe's judge."""
    labellers = sorted(set(labelling_models))
    mine = _model_name(judge_model)
    same = sorted(
        m
        for m in labellers
        if _model_name(m) == mine
        or _model_name(m).startswith(mine + "-")
        or mine.startswith(_model_name(m) + "-")
    )
    if same:
        return [
            f"the judge {judge_model} is the model that labelled the preference pairs of {run_dir} "
            f"({', '.join(same)}): DPO optimised the trained model towards its preferences, so it favours "
            "it; use a judge of another family (e.g. a Claude, Gemini, Llama or Qwen model) for these numbers"
        ]
    kin = sorted(m for m in labellers if _family(m) == _family(judge_model))
    if kin:
        return [
            f"the judge {judge_model} is of the family ({_family(judge_model)}) that labelled the preference "
            f"pairs of {run_dir} ({', '.join(kin)}): it may share its preferences; prefer another family"
        ]
    return []
