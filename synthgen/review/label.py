"""``synthgen label EVAL_DIR``: blinded pairwise labelling of an evaluation's answers, in the browser.

The items are the labelling sheet's (:func:`synthgen.evaluation.calibration.label_items`, rebuilt from
the evaluation's ``questions.jsonl``, ``answers.jsonl`` and ``summary.json``), so their ids are the ones
``synthgen evaluate --calibrate`` maps back to the candidates. Only pairs are labelled, one question at a
time; the page never receives the candidates' names or the judge's verdicts, and each labeller sees the
two answers in an order of their own (a hash of their name and the item), mapped back to the sheet's
order on the server.

Each label is appended to ``EVAL_DIR/labels.jsonl`` (who, when, item, scores, preference; the same
locked, fsynced log as review decisions), and each labeller's labels are rewritten after every label as
``EVAL_DIR/labels/<name>.csv`` in the sheet's format: the file ``--calibrate`` reads. Once two
labellers labelled the same items, their agreement (Cohen's kappa on the preference, quadratic kappa on
the scores) is shown: people who disagree with each other cannot calibrate a judge.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from aiohttp import web

from synthgen.errors import ConfigError
from synthgen.evaluation.calibration import LABEL_COLUMNS, LabelItem, label_items
from synthgen.evaluation.stats import weighted_kappa
from synthgen.review.server import json_body, make_app, page_handler
from synthgen.reviews import AppendLog, now

__all__ = ["LabelSession", "agreement", "cohen_kappa", "label_app", "labels_csv", "shown_flipped"]

LABELS_LOG = "labels.jsonl"
LABELS_DIR = "labels"
_PREFERENCES = ("a", "b", "tie")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(
            f"{path.name} is missing: not an evaluation's output folder",
            path=path.parent,
            hint="pass the --out folder of `synthgen evaluate EVAL_RECIPE --out EVAL_DIR`",
        )
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def eval_items(eval_dir: Path) -> tuple[list[LabelItem], dict[tuple[str, str], str]]:
    """The sheet's pairwise items of an evaluation and the answers (candidate, question id) -> text."""
    questions = [q for q in _jsonl(eval_dir / "questions.jsonl") if "dropped" not in q]
    answers = {
        (str(a["candidate"]), str(a["question_id"])): str(a["answer"])
        for a in _jsonl(eval_dir / "answers.jsonl")
        if a.get("answer") is not None
    }
    summary_path = eval_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        names = [str(c["name"]) for c in summary["candidates"]]
        seed = int(summary["bootstrap"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            "summary.json is missing or has no candidates and bootstrap seed",
            path=summary_path,
            hint="pass the --out folder of a finished `synthgen evaluate`",
        ) from None
    items = [i for i in label_items(questions, answers, names, seed) if i.b is not None]
    if not items:
        raise ConfigError(
            "no pair of answers to label: the evaluation has fewer than two candidates",
            path=eval_dir,
            hint="evaluate two or more candidates",
        )
    return items, answers


def _slug(name: str) -> str:
    slug = re.sub(r"[^\w.-]+", "-", name.strip().lower()).strip("-.")
    return slug[:60]


def shown_flipped(labeller: str, item_id: str) -> bool:
    """Whether ``labeller`` sees the sheet's answer b first on ``item_id``: their own blinded order."""
    return hashlib.sha256(f"{_slug(labeller)}\x1f{item_id}".encode()).digest()[0] % 2 == 1


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's (unweighted) kappa of two raters' categories; None when undefined."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    return None if expected == 1 else (observed - expected) / (1 - expected)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def agreement(labels: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Per pair of labellers with items in common: n, raw agreement and kappa on preferences, and the
    quadratic kappa of their scores (labeller -> item -> label, in the sheet's order)."""
    out: list[dict[str, Any]] = []
    for x, y in combinations(sorted(labels), 2):
        common = sorted(set(labels[x]) & set(labels[y]))
        if not common:
            continue
        px = [labels[x][i]["human_preference"] for i in common]
        py = [labels[y][i]["human_preference"] for i in common]
        sx: list[int] = []
        sy: list[int] = []
        for i in common:
            for column in ("human_score_a", "human_score_b"):
                if labels[x][i].get(column) and labels[y][i].get(column):
                    sx.append(int(labels[x][i][column]))
                    sy.append(int(labels[y][i][column]))
        out.append(
            {
                "labellers": [x, y],
                "items": len(common),
                "preference_agreement": _round(
                    sum(a == b for a, b in zip(px, py, strict=True)) / len(common)
                ),
                "preference_kappa": _round(cohen_kappa(px, py)),
                "scores": len(sx),
                "score_kappa_quadratic": _round(weighted_kappa(sx, sy, weights="quadratic")),
            }
        )
    return out


def labels_csv(
    path: Path,
    items: Sequence[LabelItem],
    answers: Mapping[tuple[str, str], str],
    labels: Mapping[str, Mapping[str, Any]],
) -> Path:
    """One labeller's sheet (the ``--export-labels`` format, filled where labelled), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        for item in items:
            label = labels.get(item.item_id, {})
            writer.writerow(
                {
                    "item_id": item.item_id,
                    "set": item.set,
                    "question": item.question,
                    "reference": item.reference,
                    "answer_a": answers[(item.a, item.question_id)],
                    "answer_b": answers[(str(item.b), item.question_id)],
                    "human_score_a": label.get("human_score_a", ""),
                    "human_score_b": label.get("human_score_b", ""),
                    "human_preference": label.get("human_preference", ""),
                }
            )
    os.replace(tmp, path)
    return path


def _score(value: Any, field: str) -> int | str:
    if value in (None, ""):
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ConfigError(f"{value!r} is not a score", field=field, hint="1 to 10, or leave it empty")
    score = int(value)
    if not 1 <= score <= 10:
        raise ConfigError(f"{score} is not a score from 1 to 10", field=field)
    return score


class LabelSession:
    """An evaluation folder's items and labels: what the label page reads and writes."""

    def __init__(self, eval_dir: Path) -> None:
        self.eval_dir = eval_dir
        self.items, self.answers = eval_items(eval_dir)
        self.by_id = {item.item_id: item for item in self.items}
        self.log = AppendLog(eval_dir / LABELS_LOG)

    def labels(self) -> dict[str, dict[str, dict[str, Any]]]:
        """labeller (slug) -> item -> their latest label, in the sheet's order."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in self.log.read():
            if r.get("item_id") in self.by_id and _slug(str(r.get("labeller", ""))):
                out.setdefault(_slug(str(r["labeller"])), {})[str(r["item_id"])] = r
        return out

    def csv_path(self, labeller: str) -> Path:
        return self.eval_dir / LABELS_DIR / f"{_slug(labeller)}.csv"

    def view(self, labeller: str) -> dict[str, Any]:
        """The items as ``labeller`` sees them (answer 1 and 2 in their order; no names, no verdicts)."""
        mine = self.labels().get(_slug(labeller), {}) if _slug(labeller) else {}
        items = []
        for item in self.items:
            first, second = (item.b, item.a) if shown_flipped(labeller, item.item_id) else (item.a, item.b)
            view: dict[str, Any] = {
                "item_id": item.item_id,
                "set": item.set,
                "question": item.question,
                "reference": item.reference,
                "answer_1": self.answers[(str(first), item.question_id)],
                "answer_2": self.answers[(str(second), item.question_id)],
            }
            label = mine.get(item.item_id)
            if label:
                view["label"] = self._shown(labeller, item.item_id, label)
            items.append(view)
        return {
            "items": items,
            "labelled": len(mine),
            "file": str(self.csv_path(labeller)) if mine else None,
            "agreement": agreement(self.labels()),
        }

    @staticmethod
    def _shown(labeller: str, item_id: str, label: Mapping[str, Any]) -> dict[str, Any]:
        flipped = shown_flipped(labeller, item_id)
        a, b = label.get("human_score_a", ""), label.get("human_score_b", "")
        pref = label.get("human_preference", "")
        return {
            "score_1": b if flipped else a,
            "score_2": a if flipped else b,
            "preference": {"a": "2" if flipped else "1", "b": "1" if flipped else "2"}.get(pref, pref),
        }

    def label(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record one label posted in the labeller's order; rewrite their sheet; the new view's summary."""
        labeller = " ".join(str(body.get("labeller", "")).split())[:80]
        if not _slug(labeller):
            raise ConfigError("who is labelling?", field="labeller", hint="type your name in the name field")
        item_id = str(body.get("item_id", ""))
        if item_id not in self.by_id:
            raise ConfigError(f"no item {item_id!r}", field="item_id", hint="reload the page")
        shown = str(body.get("preference", ""))
        if shown not in ("1", "2", "tie"):
            raise ConfigError(f"{shown!r} is not a preference", field="preference", hint="1, 2 or tie")
        first, second = _score(body.get("score_1"), "score_1"), _score(body.get("score_2"), "score_2")
        flipped = shown_flipped(labeller, item_id)
        record = {
            "time": now(),
            "labeller": labeller,
            "item_id": item_id,
            "human_score_a": second if flipped else first,
            "human_score_b": first if flipped else second,
            "human_preference": "tie" if shown == "tie" else ("a" if (shown == "1") != flipped else "b"),
        }
        self.log.append(record)
        labels = self.labels()
        path = labels_csv(self.csv_path(labeller), self.items, self.answers, labels[_slug(labeller)])
        return {"labelled": len(labels[_slug(labeller)]), "file": str(path), "agreement": agreement(labels)}


def label_app(eval_dir: Path) -> Any:
    """The application factory ``serve`` takes (token -> app) for one evaluation folder."""
    session = LabelSession(eval_dir)

    def build(token: str | None) -> web.Application:
        app = make_app(token)

        async def view(request: web.Request) -> web.StreamResponse:
            return web.json_response(session.view(request.query.get("labeller", "")))

        async def label(request: web.Request) -> web.StreamResponse:
            return web.json_response(session.label(await json_body(request)))

        app.router.add_get("/", page_handler("label.html"))
        app.router.add_get("/static/label.js", page_handler("label.js"))
        app.router.add_get("/api/items", view)
        app.router.add_post("/api/label", label)
        return app

    return build
