"""Candidates compared on the same questions: paired differences, topic folding, length bias.

A headline asks "is A better than B?", and the honest unit of that is the paired difference: per
question, A's value minus B's (only questions both have a value for), pooled and resampled by seed
with :func:`~synthgen.evaluation.stats.cluster_bootstrap` (same RNG contract, same seed). A difference
is *significant* when its interval excludes 0 (a win rate: 0.5) and rests on at least two clusters:
one seed's questions are one piece of evidence, however many there are.

Topics with fewer than ``report.min_topic_questions`` questions say nothing on their own: they are
folded into ``other``. Judges prefer longer answers, so answer length is reported per candidate and the
pairwise win rate is also given *length-controlled*, as AlpacaEval 2 does: a logistic regression of the
judge's preference (ties as half) on ``tanh(length difference / its standard deviation)``; the
length-controlled win rate is the fitted preference at equal length, ``sigmoid(intercept)``. Its
interval refits the regression on the same cluster resamples as the bootstrap.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgen.evaluation.stats import (
    METRICS,
    Interval,
    cluster_bootstrap,
    pairwise_outcomes,
    record_metrics,
    win_value,
)

__all__ = [
    "ReportSettings",
    "compare_candidates",
    "length_controlled_win_rate",
    "paired_difference",
    "read_contamination",
]

OTHER = "other"
RIDGE = 1e-6  # keeps the fit finite when one side wins every comparison (separable data)


class ReportSettings(BaseModel):
    """How the summary is cut: the eval recipe's ``report`` section."""

    model_config = ConfigDict(extra="forbid")

    min_topic_questions: int = Field(
        default=10, ge=1, description="a topic with fewer questions is folded into 'other'"
    )


def _significant(found: Interval | None, null: float) -> bool:
    return found is not None and found.clusters >= 2 and (found.low > null or found.high < null)


def _with_flag(found: Interval | None, null: float = 0.0) -> dict[str, Any] | None:
    return None if found is None else {**found.to_json(), "significant": _significant(found, null)}


class _Boot:
    def __init__(self, samples: int, confidence: float, seed: int) -> None:
        self.samples, self.confidence, self.seed = samples, confidence, seed

    def __call__(self, values: Sequence[float], clusters: Sequence[str]) -> Interval | None:
        return cluster_bootstrap(
            values, clusters, samples=self.samples, confidence=self.confidence, seed=self.seed
        )


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    clusters: Mapping[str, str],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """Mean of ``a[q] - b[q]`` over the questions both have, with its clustered bootstrap interval."""
    shared = sorted(set(a) & set(b))
    diffs = [a[q] - b[q] for q in shared]
    return cluster_bootstrap(
        diffs, [clusters[q] for q in shared], samples=samples, confidence=confidence, seed=seed
    )


def _sigmoid(z: Any) -> Any:
    import numpy as np

    return np.exp(-np.logaddexp(0.0, -z))  # no overflow warning at large |z|


def _fit_logistic(x: Any, y: Any, weights: Any, ridge: float = RIDGE) -> tuple[Any, Any]:
    """Weighted ridge logistic regression ``y ~ sigmoid(b0 + b1 x)``, one fit per row of ``weights``
    (Newton's method on two parameters; fractional ``y`` (ties as half) is a quasi-likelihood)."""
    import numpy as np

    b0, b1 = np.zeros(weights.shape[0]), np.zeros(weights.shape[0])
    for _ in range(100):
        p = _sigmoid(b0[:, None] + b1[:, None] * x)
        r, h = weights * (y - p), weights * p * (1 - p)
        g0, g1 = r.sum(axis=1) - ridge * b0, (r * x).sum(axis=1) - ridge * b1
        h00, h01, h11 = h.sum(axis=1) + ridge, (h * x).sum(axis=1), (h * x * x).sum(axis=1) + ridge
        det = h00 * h11 - h01**2
        step0, step1 = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        b0, b1 = b0 + step0, b1 + step1
        if max(np.abs(step0).max(), np.abs(step1).max()) < 1e-10:
            break
    return b0, b1


def length_controlled_win_rate(
    preferences: Sequence[float],
    length_differences: Sequence[float],
    clusters: Sequence[str],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """A's win rate over B at equal answer length, with its clustered bootstrap interval.

    ``preferences``: A's share per question (1 win, 0.5 tie, 0 loss); ``length_differences``: A's length
    minus B's. Resamples are drawn as :func:`~synthgen.evaluation.stats.cluster_bootstrap` draws them.
    """
    import numpy as np

    if not preferences:
        return None
    diffs = np.asarray(length_differences, dtype=float)
    scale = float(diffs.std())
    x = np.tanh(diffs / scale) if scale > 0 else np.zeros_like(diffs)
    y = np.asarray(preferences, dtype=float)
    names = sorted(set(clusters))
    index = np.array([names.index(c) for c in clusters])
    b0, b1 = _fit_logistic(x, y, np.ones((1, len(y))))
    point = float(_sigmoid(b0[0]))
    low = high = point
    if len(names) > 1:
        picks = np.random.default_rng(seed).integers(0, len(names), size=(samples, len(names)))
        counts = np.stack([np.bincount(row, minlength=len(names)) for row in picks])
        r0, _ = _fit_logistic(x, y, counts[:, index].astype(float))
        tail = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(_sigmoid(r0), [tail, 1 - tail]))
    found = Interval(point, low, high, len(y), len(names))
    return {**found.to_json(), "slope": round(float(b1[0]), 6), "significant": _significant(found, 0.5)}


def read_contamination(eval_dir: str | Path) -> dict[str, Any] | None:
    """``EVAL_DIR/contamination.json`` as written by the contamination check; ``None`` when absent or
    unreadable (no check run: the summary then says nothing about contamination)."""
    path = Path(eval_dir) / "contamination.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sets", {}), dict):
        return None
    return data


def contaminated(contamination: Mapping[str, Any] | None) -> set[str]:
    """The question ids a contamination check flagged (none without a check)."""
    if not contamination:
        return set()
    found: set[str] = set()
    for entry in (contamination.get("sets") or {}).values():
        if isinstance(entry, Mapping):
            found.update(str(q) for q in entry.get("flagged") or [])
    return found


def _words(text: str) -> float:
    return float(len(text.split()))


def compare_candidates(
    records: Sequence[Mapping[str, Any]],
    *,
    questions: Sequence[Mapping[str, Any]],
    answer_log: Iterable[Mapping[str, Any]] = (),
    candidates: Sequence[str],
    sets: Sequence[str],
    samples: int,
    confidence: float,
    seed: int,
    min_topic_questions: int = 10,
) -> dict[str, Any]:
    """Per set: the headline (each candidate's metrics and answer length), every pair's paired
    differences and win rates (plain and length-controlled), and the topic tables (small topics folded)."""
    boot = _Boot(samples, confidence, seed)
    info = {q["id"]: q for q in questions}
    values: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)  # (set, cand, metric) -> q
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        if r["candidate"] is None:
            continue
        if r["verdict"] is None:
            failed[(r["set"], r["candidate"])] += 1
        for metric, value in record_metrics(r):
            values[(r["set"], r["candidate"], metric)][r["question_id"]] = value
    lengths: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for a in answer_log:
        if a.get("answer") is not None and a.get("turn", 1) == 1 and a["question_id"] in info:
            lengths[(a["set"], a["candidate"])][a["question_id"]] = _words(a["answer"])
    outcomes: dict[tuple[str, str, str], list[tuple[str, float]]] = defaultdict(list)  # (set, a, b)
    for (where, qid, first, second), o in sorted(pairwise_outcomes(records).items()):
        if o["winner"] is not None:
            outcomes[(where, first, second)].append((qid, win_value(o["winner"])))
    cluster = {str(r["question_id"]): str(r["cluster"]) for r in records}  # a record's own, as a fallback
    cluster |= {qid: str(q["cluster"]) for qid, q in info.items()}
    out: dict[str, Any] = {}
    for set_name in sets:
        asked = [q for q in questions if q["set"] == set_name]
        if not asked:
            continue

        def estimate(by_question: Mapping[str, float], keep: set[str] | None = None) -> Interval | None:
            ids = sorted(q for q in by_question if keep is None or q in keep)
            return boot([by_question[q] for q in ids], [cluster[q] for q in ids])

        headline = {}
        for name in candidates:
            metrics = {}
            for metric in METRICS:
                found = estimate(values.get((set_name, name, metric), {}))
                if found is not None:
                    metrics[metric] = found.to_json()
            words = estimate(lengths.get((set_name, name), {}))
            headline[name] = {
                "metrics": metrics,
                "words": words.to_json() if words else None,
                "failed": failed.get((set_name, name), 0),
            }
        pairs = []
        for x, y in combinations(candidates, 2):
            differences = {}
            for metric in METRICS:
                found = paired_difference(
                    values.get((set_name, x, metric), {}),
                    values.get((set_name, y, metric), {}),
                    cluster,
                    samples=samples,
                    confidence=confidence,
                    seed=seed,
                )
                if found is not None:
                    differences[metric] = _with_flag(found)
            judged = outcomes.get((set_name, x, y), [])
            win = boot([v for _, v in judged], [cluster[q] for q, _ in judged]) if judged else None
            lx, ly = lengths.get((set_name, x), {}), lengths.get((set_name, y), {})
            measured = [(q, v) for q, v in judged if q in lx and q in ly]
            controlled = length_controlled_win_rate(
                [v for _, v in measured],
                [lx[q] - ly[q] for q, _ in measured],
                [cluster[q] for q, _ in measured],
                samples=samples,
                confidence=confidence,
                seed=seed,
            )
            if differences or win is not None:
                pairs.append(
                    {
                        "a": x,
                        "b": y,
                        "differences": differences,
                        "win_rate": _with_flag(win, 0.5),
                        "lc_win_rate": controlled,
                    }
                )
        for name, row in headline.items():
            row["above"] = {m: _above(pairs, name, m) for m in METRICS if _above(pairs, name, m)}
        out[set_name] = {
            "questions": len(asked),
            "headline": headline,
            "pairs": pairs,
            "topics": _topics(asked, values, set_name, candidates, estimate, min_topic_questions),
        }
    return {"min_topic_questions": min_topic_questions, "length_unit": "words", "sets": out}


def _above(pairs: Sequence[Mapping[str, Any]], name: str, metric: str) -> list[str]:
    """The candidates ``name`` is significantly above on ``metric`` (the headline's marks)."""
    out = []
    for p in pairs:
        d = p["differences"].get(metric)
        if d and d["significant"]:
            if p["a"] == name and d["value"] > 0:
                out.append(p["b"])
            elif p["b"] == name and d["value"] < 0:
                out.append(p["a"])
    return out


def _topics(
    asked: Sequence[Mapping[str, Any]],
    values: Mapping[tuple[str, str, str], Mapping[str, float]],
    set_name: str,
    candidates: Sequence[str],
    estimate: Any,
    minimum: int,
) -> list[dict[str, Any]]:
    """Topics with at least ``minimum`` questions, then ``other`` holding the rest; none when that
    leaves a single group (it would repeat the headline)."""
    by_topic: dict[str, set[str]] = defaultdict(set)
    for q in asked:
        by_topic[str(q["topic"])].add(q["id"])
    groups = {t: ids for t, ids in sorted(by_topic.items()) if len(ids) >= minimum and t != OTHER}
    rest = sorted(t for t in by_topic if t not in groups)
    if rest:
        groups[OTHER] = {q for t in rest for q in by_topic[t]}
    if len(groups) < 2:
        return []
    out = []
    for topic, ids in groups.items():
        rows = {}
        for name in candidates:
            metrics = {}
            for metric in METRICS:
                found = estimate(values.get((set_name, name, metric), {}), ids)
                if found is not None:
                    metrics[metric] = found.to_json()
            if metrics:
                rows[name] = metrics
        out.append(
            {
                "topic": topic,
                "questions": len(ids),
                "members": rest if topic == OTHER else [topic],
                "candidates": rows,
            }
        )
    return out
