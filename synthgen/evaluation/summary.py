"""``summary.md``: the evaluation summary as Markdown, the headline first.

Per question set, the headline table has one row per candidate (``value [low, high]`` with the
summary's clustered bootstrap interval) and marks ``↑x`` where the candidate is significantly above
candidate ``x`` on that metric (the paired difference over the same questions excludes 0); the pairs
table below it gives every paired difference and the win rates, plain and length-controlled
(:mod:`synthgen.evaluation.compare`). Then the question sets (with what a contamination check flagged),
topics with enough questions to say something, and each candidate's detail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from synthgen.evaluation.stats import METRICS
from synthgen.reports.eval_html import METRIC_LABELS as _LABELS
from synthgen.reports.eval_html import SET_TITLES
from synthgen.reports.eval_html import format_estimate as _cell

__all__ = ["render_markdown"]


def _rate(metric: str) -> bool:
    return "score" not in metric


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _headline(comparison: Mapping[str, Any], flagged: int) -> list[str]:
    head, pairs = comparison["headline"], comparison["pairs"]
    metrics = [m for m in METRICS if any(m in c["metrics"] for c in head.values())]
    rows = []
    for name, c in head.items():
        cells = []
        for m in metrics:
            above = c.get("above", {}).get(m)
            cells.append(
                _cell(c["metrics"].get(m), rate=_rate(m)) + (f" ↑{', '.join(above)}" if above else "")
            )
        words = c["words"]
        n = max((e["n"] for e in c["metrics"].values()), default=0)
        rows.append([name, str(n), *cells, f"{words['value']:.0f}" if words else "–", str(c["failed"])])
    lines = _table(["candidate", "n", *(_LABELS[m] for m in metrics), "words", "failed"], rows)
    if flagged:
        lines += ["", f"{flagged} question(s) of this set were flagged by the contamination check (below)."]
    if pairs:
        diff = [m for m in metrics if any(m in p["differences"] for p in pairs)]
        lines += [
            "",
            "Pairs: A minus B on the same questions; * = the interval excludes 0 (win rates: 50%).",
            "",
        ]
        lines += _table(
            ["A", "B", *(f"Δ {_LABELS[m]}" for m in diff), "win rate A>B", "at equal length"],
            (
                [
                    p["a"],
                    p["b"],
                    *(_cell(p["differences"].get(m), rate=_rate(m), signed=True) for m in diff),
                    _cell(p["win_rate"], rate=True),
                    _cell(p["lc_win_rate"], rate=True),
                ]
                for p in pairs
            ),
        )
    return lines


def _contamination(summary: Mapping[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """Flagged question ids per set and the section describing the check (empty without one)."""
    found = summary.get("contamination")
    if not isinstance(found, Mapping):
        return {}, []
    sets = {s: e for s, e in (found.get("sets") or {}).items() if isinstance(e, Mapping)}
    flagged = {s: [str(q) for q in e.get("flagged") or []] for s, e in sets.items()}
    overlap = found.get("overlap") or {}
    action = "dropped from every table" if found.get("drop") else "kept in the tables (not dropped)"
    lines = [
        "",
        "## Contamination",
        "",
        f"{found.get('n', '?')}-gram overlap of each question and reference with every training row; "
        f"threshold {found.get('threshold', '?')}. Flagged questions are {action}.",
        "",
    ]
    lines += _table(
        ["set", "checked", "flagged", "questions (overlap)"],
        (
            [
                s,
                str(e.get("checked", "?")),
                str(len(flagged[s])),
                ", ".join(
                    f"{q} ({overlap[q]:.2f})" if isinstance(overlap.get(q), int | float) else q
                    for q in flagged[s]
                )
                or "–",
            ]
            for s, e in sets.items()
        ),
    )
    return flagged, lines


def _topics(set_name: str, topics: Sequence[Mapping[str, Any]]) -> list[str]:
    metrics = [m for m in METRICS if any(m in c for t in topics for c in t["candidates"].values())]
    rows = [
        [
            t["topic"] + (f" ({', '.join(t['members'])})" if t["topic"] == "other" else ""),
            str(t["questions"]),
            name,
            *(_cell(c.get(m), rate=_rate(m)) for m in metrics),
        ]
        for t in topics
        for name, c in t["candidates"].items()
    ]
    return [
        "",
        f"### {set_name}",
        "",
        *_table(["topic", "questions", "candidate", *(_LABELS[m] for m in metrics)], rows),
    ]


def render_markdown(summary: Mapping[str, Any]) -> str:
    """summary.md: the headline per set, the sets and contamination, topics, then each candidate."""
    boot = summary["bootstrap"]
    comparison = summary.get("comparison") or {"sets": {}, "min_topic_questions": 10}
    flagged, contamination = _contamination(summary)
    lines = [
        f"# Evaluation: {summary['name']}",
        "",
        f"Judge: `{summary['judge']['model']}` (profile `{summary['judge']['profile']}`)"
        + (" via the offline provider: placeholder verdicts, not a measurement" if summary["offline"] else "")
        + f". Intervals: {boot['confidence']:.0%} bootstrap, {boot['samples']} resamples of seeds "
        f"(clusters), seed {boot['seed']}. Rates in %; win rates count ties as half. ↑x: significantly "
        "above candidate x (the paired difference excludes 0, from two seeds or more). Words: mean "
        "answer length; a judge favours long answers, hence the win rate at equal length (AlpacaEval's "
        "length control).",
        "",
    ]
    lines += [f"> **Warning:** {w}" for w in summary["warnings"]]
    failures = summary["failures"]
    lines += [
        "",
        f"Judge calls: {failures['calls']}; parse failures: {failures['parse_failures']}; other failures: "
        f"{failures['other_failures']} (counted as `failed`, never dropped); candidate answers "
        f"that failed: {failures['answer_failures']}.",
    ]
    for set_name, found in comparison["sets"].items():
        title = SET_TITLES.get(set_name, set_name)
        lines += ["", f"## {set_name}: {title}", ""]
        lines += _headline(found, len(flagged.get(set_name, [])))
    lines += ["", "## Question sets", ""]
    lines += _table(
        ["set", "questions", "seeds/clusters", "flagged", "dropped", "contaminated", "note"],
        (
            [
                name,
                str(s["questions"]),
                str(s["clusters"]),
                str(s["flagged"]),
                str(s["dropped"]),
                str(len(flagged[name])) if name in flagged else "not checked",
                s["note"],
            ]
            for name, s in summary["sets"].items()
        ),
    )
    lines += contamination
    topics = [(s, f["topics"]) for s, f in comparison["sets"].items() if f["topics"]]
    if topics:
        lines += [
            "",
            f"## By topic (topics with at least {comparison['min_topic_questions']} questions; the rest "
            "in 'other')",
        ]
        for set_name, found_topics in topics:
            lines += _topics(set_name, found_topics)
    lines += ["", "## Per candidate"]
    for name in dict.fromkeys(r["candidate"] for r in summary["rows"]):
        mine = [r for r in summary["rows"] if r["candidate"] == name and r["topic"] == "all"]
        metrics = [m for m in METRICS if any(m in r["metrics"] for r in mine)]
        lines += ["", f"### {name}", ""]
        lines += _table(
            ["set", "n", *(_LABELS[m] for m in metrics), "failed"],
            (
                [
                    r["set"],
                    str(max((e["n"] for e in r["metrics"].values()), default=0)),
                    *(_cell(r["metrics"].get(m), rate=_rate(m)) for m in metrics),
                    str(r["failed"]),
                ]
                for r in mine
            ),
        )
    judged = [p for p in summary["pairwise"] if p["topic"] == "all"]
    if judged:
        lines += ["", "## The judge's pairwise verdicts", ""]
        lines += _table(
            ["set", "A", "B", "n", "ties", "order-inconsistent", "failed", "win rate from scores"],
            (
                [
                    p["set"],
                    p["a"],
                    p["b"],
                    str(p["comparisons"]),
                    str(p["ties"]),
                    "–" if p["order_inconsistency"] is None else f"{p['order_inconsistency']:.1%}",
                    str(p["failed"]),
                    _cell(p["score_win_rate"], rate=True),
                ]
                for p in judged
            ),
        )
    calibration = summary.get("calibration")
    if calibration:
        lines += [
            "",
            "## Human calibration",
            "",
            "```json",
            json.dumps(calibration, indent=2, ensure_ascii=False),
            "```",
        ]
    return "\n".join(lines) + "\n"
