"""Dataset metrics on a RUN_DIR: what a reviewer should see before anyone trains on it.

Numbers come from the published parquet files (what a trainer reads), ``run.json`` (what the run paid
for and dropped, per step) and ``.synthgen/{failures,rejected}.jsonl`` (one example per reason, when
present). :func:`run_metrics` returns one JSON-able dict that the terminal summary, the HTML report and
the dataset card all render, so the three never disagree.

Diversity is measured offline, without embeddings (no model download, no drift between model versions):

- ``distinct_1``/``distinct_2`` (Li et al., 2016): unique n-grams / all n-grams over the turns of one
  role, n-grams never crossing a turn. Low values mean the generator repeats itself.
- ``near_duplicate_rate``: the share of rows that :class:`~synthgen.quality.dedup.NearDuplicates` (the runner's
  own filter, same threshold) flags against an earlier row. The runner already dropped these within a
  step, so anything above 0 means rows were added or merged after generation.
- ``shingle_diversity``: mean pairwise Jaccard *distance* between the word 3-shingle sets of the texts,
  exact on a deterministic sample of at most :data:`SAMPLE` texts. It is the measure the dedup filter
  thresholds, so a diversity of 0.97 and a near-duplicate threshold of 0.85 speak the same units; unlike a
  compression ratio it does not move with text length or with the system prompt every row shares. Exact
  pairs on the sample cost ~30k set intersections; MinHash would only add estimation noise at that size.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synthgen.quality.dedup import NearDuplicates
from synthgen.quality.filters import QualityConfig
from synthgen.quality.text import LANGUAGES, detect_language, tokenize
from synthgen.records import output_kind
from synthgen.rundir import RunDir

__all__ = [
    "SAMPLE",
    "distinct_n",
    "distribution",
    "near_duplicates",
    "run_metrics",
    "shingle_diversity",
]

SAMPLE = 256
"""Texts compared pairwise for shingle diversity (32,640 pairs)."""

_COUNTS = ("items", "ok", "failed", "rejected", "not_started", "rows", "rows_rejected")
_EXAMPLES = 5  # near-duplicate pairs and failure details kept in the summary


# -- distributions --------------------------------------------------------------------------------


def _nice_step(span: float, bins: int) -> float:
    """The smallest 1, 2 or 5 x 10^k step that covers ``span`` in at most ``bins`` bins."""
    raw = span / bins
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _edges(values: Sequence[float], bins: int) -> list[float]:
    low, high = min(values), max(values)
    if all(float(v).is_integer() for v in values) and high - low < 2 * bins:
        return [float(x) for x in range(int(low), int(high) + 2)]  # one bin per integer
    step = _nice_step(high - low, bins) if high > low else 1.0
    start = math.floor(low / step) * step
    count = max(1, math.ceil((high - start) / step + 1e-9))
    if start + count * step <= high:
        count += 1  # the maximum falls in a last, half-open bin
    return [round(start + i * step, 10) for i in range(count + 1)]


def _round(value: float) -> float | int:
    """Four decimals, and integers as integers: JSON and the card read cleanly."""
    return int(value) if float(value).is_integer() else round(value, 4)


def distribution(
    values: Sequence[float], *, edges: Sequence[float] | None = None, bins: int = 12
) -> dict[str, Any]:
    """Summary statistics and a histogram (bins ``[edges[i], edges[i+1])``, the last one closed)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)
    edges = list(edges) if edges is not None else _edges(ordered, bins)
    unit = all(float(v).is_integer() for v in ordered) and all(
        b - a == 1 for a, b in itertools.pairwise(edges)
    )
    counts = [0] * (len(edges) - 1)
    for v in ordered:
        i = next((i for i in range(len(counts)) if v < edges[i + 1]), len(counts) - 1)
        counts[i] += 1
    return {
        "n": n,
        "min": _round(ordered[0]),
        "p50": _round(statistics.median(ordered)),
        "mean": _round(statistics.fmean(ordered)),
        "p90": _round(ordered[min(n - 1, math.ceil(0.9 * n) - 1)]),
        "max": _round(ordered[-1]),
        "histogram": {"edges": edges, "counts": counts, "unit": unit},  # unit: one bin per integer value
    }


# -- diversity ------------------------------------------------------------------------------------


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Unique n-grams / all n-grams (within each text); None when there are no n-grams."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = tokenize(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return round(len(seen) / total, 4) if total else None


def _shingles(text: str) -> frozenset[str]:
    tokens = tokenize(text)  # as dedup does: a text under three words is one shingle
    return frozenset(" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2)) if tokens)


def _sample(texts: Sequence[str], size: int) -> list[str]:
    """A deterministic sample: the texts whose sha256 sorts first (independent of row order)."""
    return sorted(texts, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:size]


def shingle_diversity(texts: Sequence[str], *, sample: int = SAMPLE) -> float | None:
    """Mean pairwise Jaccard distance of word 3-shingle sets; 1.0 = no two texts share a 3-word phrase."""
    sets = [s for s in (_shingles(t) for t in _sample(texts, sample)) if s]
    if len(sets) < 2:
        return None
    distances = [1 - len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return round(statistics.fmean(distances), 4)


def near_duplicates(keyed_texts: Iterable[tuple[str, str]], threshold: float) -> dict[str, Any]:
    """Rows that duplicate or nearly duplicate an earlier one, as the runner's filter would see them."""

    finder = NearDuplicates(threshold=threshold)
    rows, reasons, examples = 0, Counter[str](), list[dict[str, str]]()
    for key, text in keyed_texts:
        rows += 1
        found = finder.check(key, text)
        if found is not None:
            reasons[found.reason] += 1
            if len(examples) < _EXAMPLES:
                examples.append({"row": key, "reason": found.reason, "detail": found.detail})
    flagged = sum(reasons.values())
    return {
        "rows": rows,
        "flagged": flagged,
        "rate": round(flagged / rows, 4) if rows else None,
        "reasons": dict(sorted(reasons.items())),
        "examples": examples,
        "threshold": threshold,
    }


# -- sections -------------------------------------------------------------------------------------


def _turns(rows: Sequence[Mapping[str, Any]], role: str) -> list[str]:
    return [m["content"] for r in rows for m in r["messages"] if m["role"] == role]


def _key(row: Mapping[str, Any], index: int) -> str:
    ident = row.get("dialogue_id") or str(row.get("prompt_id", ""))[:12]
    return f"{row['split']}/{index} {ident}"


def _coverage(
    seeds: Sequence[Mapping[str, Any]], sft: Sequence[Mapping[str, Any]], prefs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Rows per seed count the rows *planned from* the seed (``seed_ids[0]``); later ids are related
    seeds whose facts were shown, counted apart as ``related``."""
    per_seed: dict[str, dict[str, Any]] = {
        s["id"]: {"topic": s["topic"], "split": s.get("split"), "sft": 0, "prefs": 0, "related": 0}
        for s in seeds
    }
    topics: dict[str, dict[str, int]] = {}
    for s in seeds:
        topics.setdefault(s["topic"], {"seeds": 0, "unused": 0, "sft": 0, "prefs": 0})["seeds"] += 1
    for config, rows in (("sft", sft), ("prefs", prefs)):
        for row in rows:
            ids = list(row.get("seed_ids") or [])
            topic = row.get("topic") or (per_seed[ids[0]]["topic"] if ids and ids[0] in per_seed else "?")
            topics.setdefault(topic, {"seeds": 0, "unused": 0, "sft": 0, "prefs": 0})[config] += 1
            for position, seed_id in enumerate(ids):
                entry = per_seed.setdefault(
                    seed_id, {"topic": topic, "split": None, "sft": 0, "prefs": 0, "related": 0}
                )
                entry[config if position == 0 else "related"] += 1
    unused = sorted(i for i, e in per_seed.items() if e["sft"] + e["prefs"] == 0)
    for seed_id in unused:
        topics[per_seed[seed_id]["topic"]]["unused"] += 1
    return {
        "seeds": len(seeds),
        "used": len(per_seed) - len(unused),
        "unused_seeds": unused,
        "rows_per_seed": {c: distribution([e[c] for e in per_seed.values()]) for c in ("sft", "prefs")},
        "per_seed": per_seed,
        "topics": dict(sorted(topics.items())),
    }


def _lengths(sft: Sequence[Mapping[str, Any]], prefs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    from synthgen.llm.usage import TOKEN_COUNTER, count_message_tokens, count_tokens

    return {
        "token_counter": TOKEN_COUNTER,
        "user_turns_per_dialogue": distribution(
            [sum(m["role"] == "user" for m in r["messages"]) for r in sft]
        ),
        "tokens": {
            "user_turn": distribution([count_tokens(t) for t in _turns(sft, "user")]),
            "assistant_turn": distribution([count_tokens(t) for t in _turns(sft, "assistant")]),
            "dialogue": distribution([count_message_tokens(r["messages"]) for r in sft]),
            "chosen": distribution([count_tokens(r["chosen"][0]["content"]) for r in prefs]),
            "rejected": distribution([count_tokens(r["rejected"][0]["content"]) for r in prefs]),
        },
    }


def _diversity(
    sft: Sequence[Mapping[str, Any]], prefs: Sequence[Mapping[str, Any]], threshold: float
) -> dict[str, Any]:

    section: dict[str, Any] = {}
    for role in ("user", "assistant"):
        turns = _turns(sft, role)
        section[role] = {
            "turns": len(turns),
            "distinct_1": distinct_n(turns, 1),
            "distinct_2": distinct_n(turns, 2),
            "shingle_diversity": shingle_diversity(
                ["\n".join(m["content"] for m in r["messages"] if m["role"] == role) for r in sft]
            ),
        }
    chosen = [r["chosen"][0]["content"] for r in prefs]
    section["chosen"] = {
        "turns": len(chosen),
        "distinct_1": distinct_n(chosen, 1),
        "distinct_2": distinct_n(chosen, 2),
        "shingle_diversity": shingle_diversity(chosen),
    }
    section["near_duplicates"] = {
        name: near_duplicates(
            ((_key(r, i), output_kind(name).dedup_text(r)) for i, r in enumerate(rows)), threshold
        )
        for name, rows in (("sft", sft), ("prefs", prefs))
    }
    return section


def _language(
    sft: Sequence[Mapping[str, Any]], prefs: Sequence[Mapping[str, Any]], expected: str
) -> dict[str, Any]:
    """Share of turns detected in the expected language, among turns long enough to tell."""
    texts = {
        "user": _turns(sft, "user"),
        "assistant": _turns(sft, "assistant"),
        "chosen": [r["chosen"][0]["content"] for r in prefs],
    }
    counts: Counter[str] = Counter()
    by_role: dict[str, float | None] = {}
    for role, turns in texts.items():
        found = Counter(detect_language(t, (expected, *LANGUAGES))[0] for t in turns)
        counts.update(found)
        decided = sum(n for lang, n in found.items() if lang != "und")
        by_role[role] = round(found[expected] / decided, 4) if decided else None
    decided = sum(n for lang, n in counts.items() if lang != "und")
    return {
        "expected": expected,
        "rate": round(counts[expected] / decided, 4) if decided else None,
        "by_role": by_role,
        "counts": dict(counts.most_common()),
        "undetermined": counts["und"],
    }


def _judge(prefs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    chosen = [float(r["score_chosen"]) for r in prefs]
    rejected = [float(r["score_rejected"]) for r in prefs]
    margins = [round(c - r, 6) for c, r in zip(chosen, rejected, strict=True)]
    edges = _edges(chosen + rejected, 12) if prefs else None
    return {
        "pairs": len(prefs),
        "judge_models": sorted({str(r.get("judge_model")) for r in prefs}),
        "score_chosen": distribution(chosen, edges=edges),
        "score_rejected": distribution(rejected, edges=edges),
        "margin": distribution(margins),
        "not_preferred": sum(m <= 0 for m in margins),  # ties or inversions: no signal for DPO
        "candidate_score": distribution(
            [float(c["score"]) for r in prefs for c in r.get("candidates") or []]
        ),
    }


def _outcomes(run_dir: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    """Counts per step and reason from run.json; one example detail per reason from the reports."""
    examples: dict[str, dict[str, dict[str, str]]] = {"failures": {}, "rejections": {}}
    for kind, report in (("failures", "failed"), ("rejections", "rejected")):
        for record in RunDir(run_dir).read_reports(report):
            by_step = examples[kind].setdefault(record["step"], {})
            by_step.setdefault(record["reason"], str(record.get("detail", ""))[:300])
    return {
        kind: {
            step: {
                reason: {"count": n, "example": examples[kind].get(step, {}).get(reason)}
                for reason, n in sorted(counts[kind].items(), key=lambda kv: (-kv[1], kv[0]))
            }
            for step, counts in result["steps"].items()
        }
        for kind in ("failures", "rejections")
    }


def _usage(result: Mapping[str, Any]) -> dict[str, Any]:
    steps = {}
    for name, c in result["steps"].items():
        usage = c.get("usage") or {}
        steps[name] = {
            "requests": usage.get("requests", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "cost_usd": round(usage.get("cost_usd", 0.0), 6),
            "seconds": c.get("seconds", 0.0),
            "tokens_per_row": round(usage.get("total_tokens", 0) / c["rows"], 1) if c.get("rows") else None,
        }
    return {
        "steps": steps,
        "total": result["usage"]["total"],
        "by_model": result["usage"].get("by_model", {}),
        "cost_usd": result["cost_usd"],
        "cache_hits": result["usage"].get("cache_hits", 0),
    }


def run_metrics(
    run_dir: str | Path,
    *,
    result: Mapping[str, Any] | None = None,
    language: str | None = None,
    near_duplicate_threshold: float | None = None,
) -> dict[str, Any]:
    """Every metric of a RUN_DIR as one JSON-able dict.

    ``result`` is the run.json content when it is not (yet) on disk, as when the card is rendered during
    finalize; ``language`` defaults to the seeds' most common language, the threshold to the quality
    filter's default.
    """
    run_dir = Path(run_dir)
    rd = RunDir(run_dir)
    result = result if result is not None else rd.read_result()
    seeds, sft, prefs = (rd.read_rows(c) for c in ("seeds", "sft", "prefs"))
    majority = Counter(s.get("language") or "es" for s in seeds).most_common(1)
    expected = language or (majority[0][0] if majority else "es")
    threshold = near_duplicate_threshold or QualityConfig().near_duplicate_threshold
    splits: dict[str, dict[str, int]] = {}
    for config, rows in (("sft", sft), ("prefs", prefs), ("seeds", seeds)):
        counts = Counter(str(r.get("split")) for r in rows)
        splits[config] = dict(sorted(counts.items(), key=lambda kv: (kv[0] != "train", kv[0])))
    return {
        "recipe": result["recipe"],
        "offline": result["offline"],
        "complete": result["complete"],
        "steps": {
            name: {k: c[k] for k in ("generator", "version", "output", *_COUNTS) if k in c}
            for name, c in result["steps"].items()
        },
        "rows": {"sft": len(sft), "prefs": len(prefs), "seeds": len(seeds), "splits": splits},
        "coverage": _coverage(seeds, sft, prefs),
        "lengths": _lengths(sft, prefs),
        "diversity": _diversity(sft, prefs, threshold),
        "language": _language(sft, prefs, expected),
        "judge": _judge(prefs),
        **_outcomes(run_dir, result),
        "usage": _usage(result),
    }
