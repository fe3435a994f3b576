"""Evaluation statistics: clustered bootstrap intervals, win rates, weighted kappa, the summary rows.

Why clustered: the questions of one seed (its paraphrases, its follow-up) are not independent draws;
resampling questions would pretend there is more evidence than there is. So the bootstrap resamples
clusters (seeds) with replacement and pools their questions: the estimate is the pooled mean, the
interval the percentiles of the resampled pooled means. The RNG is ``numpy.random.default_rng(seed)``
drawing ``integers(0, k, size=(samples, k))`` over the clusters sorted by name, so a summary is
reproducible from the eval recipe's seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.judge.modes import combine_orders

__all__ = [
    "Bootstrap",
    "Interval",
    "claim_share",
    "cluster_bootstrap",
    "failure_counts",
    "record_metrics",
    "summarize_judgments",
    "weighted_kappa",
    "win_value",
]

ALL = "all"
#: Metric names in table order; rates are in [0, 1], scores in [1, 10].
METRICS = (
    "score",
    "multi_turn_score",
    "claim_precision",
    "claim_recall",
    "contradiction_rate",
    "abstained",
    "declined",
    "correct",
    "incorrect",
)


class Bootstrap(BaseModel):
    """Bootstrap settings of an eval recipe; the RNG seed is the eval recipe's ``seed``."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(default=1000, ge=10, le=200_000)
    confidence: float = Field(default=0.95, gt=0, lt=1)


@dataclass(frozen=True)
class Interval:
    """A pooled mean with its bootstrap interval; ``n`` values from ``clusters`` clusters."""

    value: float
    low: float
    high: float
    n: int
    clusters: int

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def cluster_bootstrap(
    values: Sequence[float],
    clusters: Sequence[str],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """Pooled mean of ``values`` and its percentile interval, resampling whole ``clusters``."""
    import numpy as np

    if len(values) != len(clusters):
        raise ValueError("one cluster per value")
    if not values:
        return None
    groups: dict[str, list[float]] = defaultdict(list)
    for value, cluster in zip(values, clusters, strict=True):
        groups[cluster].append(float(value))
    names = sorted(groups)
    sums = np.array([sum(groups[c]) for c in names])
    counts = np.array([len(groups[c]) for c in names])
    point = float(sums.sum() / counts.sum())
    if len(names) == 1:
        return Interval(point, point, point, len(values), 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(samples, len(names)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(point, float(low), float(high), len(values), len(names))


def win_value(winner: Literal["x", "y", "tie"]) -> float:
    """x's share of one comparison: a win 1, a tie half, a loss 0."""
    return {"x": 1.0, "tie": 0.5, "y": 0.0}[winner]


def weighted_kappa(
    rater_a: Sequence[int], rater_b: Sequence[int], *, weights: Literal["linear", "quadratic"] = "linear"
) -> float | None:
    """Cohen's weighted kappa of two raters' ordinal scores; ``None`` when undefined (no variation).

    Disagreement weights are ``|i - j|`` (linear) or ``(i - j)**2`` (quadratic) on the score values;
    normalising them by the scale's range would cancel out of the ratio.
    """
    if len(rater_a) != len(rater_b):
        raise ValueError("both raters must rate the same items")
    n = len(rater_a)
    if n == 0:
        return None
    categories = sorted(set(rater_a) | set(rater_b))
    power = 1 if weights == "linear" else 2
    row = {c: sum(a == c for a in rater_a) for c in categories}
    col = {c: sum(b == c for b in rater_b) for c in categories}
    observed = sum(abs(a - b) ** power for a, b in zip(rater_a, rater_b, strict=True)) / n
    expected = sum(abs(i - j) ** power * row[i] * col[j] for i in categories for j in categories) / n**2
    return None if expected == 0 else 1 - observed / expected


def claim_share(check: Mapping[str, Any], verdict: str) -> float | None:
    """Share of a :class:`~synthgen.judge.claims.ClaimCheck`'s claims with ``verdict``: precision and
    contradiction rate of an answer's claims, recall of the reference's. ``None`` without claims (a pure
    referral has no precision)."""
    claims = check["claims"]
    return sum(c["verdict"] == verdict for c in claims) / len(claims) if claims else None


def record_metrics(record: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The metric values one parsed judgment contributes (none for a failed call)."""
    verdict = record.get("verdict")
    if verdict is None:
        return []
    mode = record["mode"]
    if mode in ("single", "multi_turn"):
        return [("score" if mode == "single" else "multi_turn_score", float(verdict["score"]))]
    if mode == "claims":
        pairs = [("claim_precision", "supported"), ("contradiction_rate", "contradicted")]
    elif mode == "recall":
        pairs = [("claim_recall", "supported")]
    else:
        pairs = []
    found = [(name, claim_share(verdict, which)) for name, which in pairs]
    if pairs:
        return [(name, value) for name, value in found if value is not None]
    if mode == "abstention":
        declined, referred = bool(verdict["declined"]), bool(verdict["referred"])
        return [("abstained", float(declined and referred)), ("declined", float(declined))]
    if mode == "coverage":
        return [(name, float(verdict["verdict"] == name)) for name in ("correct", "incorrect", "declined")]
    return []


def pairwise_outcomes(
    records: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(set, question_id, x, y) -> winner and consistency from the two orders (``None`` if one failed)."""
    orders: dict[tuple[str, str, str, str], dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["mode"] == "pairwise":
            orders[(r["set"], r["question_id"], r["pair"][0], r["pair"][1])][r["order"]] = r
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for key, both in orders.items():
        first, second = both.get(1), both.get(2)
        if first is None or second is None or first["verdict"] is None or second["verdict"] is None:
            out[key] = {"winner": None, "consistent": None, "record": first or second}
            continue
        winner, consistent = combine_orders(first["verdict"]["winner"], second["verdict"]["winner"])
        out[key] = {"winner": winner, "consistent": consistent, "record": first}
    return out


class _Groups:
    """Values with their clusters, grouped by a key, turned into estimates."""

    def __init__(self, samples: int, confidence: float, seed: int) -> None:
        self.samples, self.confidence, self.seed = samples, confidence, seed
        self.values: dict[tuple[Any, ...], tuple[list[float], list[str]]] = defaultdict(lambda: ([], []))

    def add(self, key: tuple[Any, ...], value: float, cluster: str) -> None:
        values, clusters = self.values[key]
        values.append(value)
        clusters.append(cluster)

    def estimate(self, key: tuple[Any, ...]) -> Interval | None:
        values, clusters = self.values.get(key, ([], []))
        return cluster_bootstrap(
            values, clusters, samples=self.samples, confidence=self.confidence, seed=self.seed
        )


def summarize_judgments(
    records: Sequence[Mapping[str, Any]],
    *,
    answer_log: Sequence[Mapping[str, Any]] = (),
    candidates: Sequence[str],
    sets: Sequence[str],
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Failure counts; per candidate, set and topic each metric's estimate; per set and pair of candidates
    the win rate from the judge's pairwise verdicts and from the single scores (ties as half)."""
    groups = _Groups(samples, confidence, seed)
    topics: dict[str, set[str]] = defaultdict(set)
    failures: dict[tuple[str, str, str], int] = defaultdict(int)
    scores: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    where: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in records:
        topics[r["set"]].add(r["topic"])
        if r["verdict"] is None and r["candidate"] is not None:  # pairwise failures: in "pairwise"
            failures[(r["candidate"], r["set"], r["topic"])] += 1
        for metric, value in record_metrics(r):
            for topic in (ALL, r["topic"]):
                groups.add((r["candidate"], r["set"], topic, metric), value, r["cluster"])
        if r["mode"] == "single" and r["verdict"] is not None:
            scores[(r["set"], r["question_id"])][r["candidate"]] = float(r["verdict"]["score"])
            where[(r["set"], r["question_id"])] = r
    rows: list[dict[str, Any]] = []
    for name in candidates:
        for set_name in sets:
            for topic in (ALL, *sorted(topics[set_name])):
                metrics = {}
                for metric in METRICS:
                    found = groups.estimate((name, set_name, topic, metric))
                    if found is not None:
                        metrics[metric] = found.to_json()
                failed = (
                    sum(v for (c, s, _), v in failures.items() if c == name and s == set_name)
                    if topic == ALL
                    else failures.get((name, set_name, topic), 0)
                )
                if metrics or failed:
                    rows.append(
                        {
                            "candidate": name,
                            "set": set_name,
                            "topic": topic,
                            "metrics": metrics,
                            "failed": failed,
                        }
                    )
    pairwise = _pairwise(records, candidates, sets, topics, scores, where, groups)
    return {"failures": failure_counts(records, answer_log), "rows": rows, "pairwise": pairwise}


def failure_counts(
    records: Sequence[Mapping[str, Any]], answer_log: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Judge calls by mode: how many, how many failed to parse, how many failed otherwise."""
    by_mode: dict[str, dict[str, int]] = {}
    for r in records:
        counts = by_mode.setdefault(r["mode"], {"calls": 0, "parse_failures": 0, "other_failures": 0})
        counts["calls"] += 1
        counts["parse_failures"] += bool(r["parse_failure"])
        counts["other_failures"] += r["failure"] is not None and not r["parse_failure"]
    return {
        "calls": len(records),
        "parse_failures": sum(c["parse_failures"] for c in by_mode.values()),
        "other_failures": sum(c["other_failures"] for c in by_mode.values()),
        "answer_failures": sum(a["failure"] is not None for a in answer_log),
        "by_mode": by_mode,
    }


def _pairwise(
    records: Sequence[Mapping[str, Any]],
    candidates: Sequence[str],
    sets: Sequence[str],
    topics: Mapping[str, set[str]],
    scores: Mapping[tuple[str, str], Mapping[str, float]],
    where: Mapping[tuple[str, str], Mapping[str, Any]],
    groups: _Groups,
) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str, str, str], dict[str, int]] = defaultdict(
        lambda: {"n": 0, "ties": 0, "inconsistent": 0, "failed": 0}
    )
    for (set_name, _, x, y), found in pairwise_outcomes(records).items():
        r = found["record"]
        for topic in (ALL, r["topic"]):
            c = counts[(set_name, topic, x, y)]
            if found["winner"] is None:
                c["failed"] += 1
                continue
            c["n"] += 1
            c["ties"] += found["winner"] == "tie"
            c["inconsistent"] += not found["consistent"]
            groups.add(("judge", set_name, topic, x, y), win_value(found["winner"]), r["cluster"])
    for key, by_candidate in scores.items():
        set_name, r = key[0], where[key]
        for x, y in combinations(candidates, 2):
            if x in by_candidate and y in by_candidate:
                sx, sy = by_candidate[x], by_candidate[y]
                winner: Literal["x", "y", "tie"] = "x" if sx > sy else "y" if sy > sx else "tie"
                for topic in (ALL, r["topic"]):
                    groups.add(("scores", set_name, topic, x, y), win_value(winner), r["cluster"])
    out: list[dict[str, Any]] = []
    for set_name in sets:
        for topic in (ALL, *sorted(topics[set_name])):
            for x, y in combinations(candidates, 2):
                judged = groups.estimate(("judge", set_name, topic, x, y))
                by_score = groups.estimate(("scores", set_name, topic, x, y))
                if (set_name, topic, x, y) not in counts and by_score is None:
                    continue
                c = counts[(set_name, topic, x, y)]
                out.append(
                    {
                        "set": set_name,
                        "topic": topic,
                        "a": x,
                        "b": y,
                        "win_rate": judged.to_json() if judged else None,
                        "ties": c["ties"],
                        "order_inconsistency": round(c["inconsistent"] / c["n"], 6) if c["n"] else None,
                        "comparisons": c["n"],
                        "failed": c["failed"],
                        "score_win_rate": by_score.to_json() if by_score else None,
                    }
                )
    return out
