"""``summary.md``: the evaluation summary as Markdown tables, one per question set and candidate.

Each table has a row per topic (``all`` first); cells read ``value [low, high]`` with the summary's
bootstrap interval. Pairwise tables give the win rate of A over B from the judge's two-order verdicts
and, for comparison, from the single-answer scores; ties count as half.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from synthgen.evaluation.stats import METRICS

__all__ = ["render_markdown"]

SET_TITLES = {
    "paraphrases": "Paraphrases of training seeds (new wording of what was trained)",
    "heldout": "Held-out seeds (test split: never trained; a referral may be the right answer)",
    "out_of_scope": "Out-of-scope questions (must be declined and referred to the office)",
    "real": "Real student queries (coverage: answered correctly, wrongly, or declined)",
}
_LABELS = {
    "score": "score (1-10)",
    "multi_turn_score": "follow-up score",
    "claim_precision": "claim precision",
    "claim_recall": "claim recall",
    "contradiction_rate": "contradicted",
    "abstained": "declined+referred",
    "declined": "declined",
    "correct": "correct",
    "incorrect": "incorrect",
}


def _cell(estimate: Mapping[str, Any] | None, *, rate: bool) -> str:
    if not estimate:
        return "–"
    scale, unit = (100, "%") if rate else (1, "")
    v, lo, hi = (estimate[k] * scale for k in ("value", "low", "high"))
    digits = 1 if rate else 2
    return f"{v:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(summary: Mapping[str, Any]) -> str:
    """summary.md: one table per set and candidate (a row per topic), then the set's pairwise table."""
    boot = summary["bootstrap"]
    lines = [
        f"# Evaluation: {summary['name']}",
        "",
        f"Judge: `{summary['judge']['model']}` (profile `{summary['judge']['profile']}`)"
        + (" via the offline provider: placeholder verdicts, not a measurement" if summary["offline"] else "")
        + f". Intervals: {boot['confidence']:.0%} bootstrap, {boot['samples']} resamples of seeds "
        f"(clusters), seed {boot['seed']}. Rates in %; win rates count ties as half.",
        "",
    ]
    lines += [f"> **Warning:** {w}" for w in summary["warnings"]]
    failures = summary["failures"]
    lines += [
        "",
        f"Judge calls: {failures['calls']}; parse failures: {failures['parse_failures']}; other failures: "
        f"{failures['other_failures']} (counted below as `failed`, never dropped); candidate answers "
        f"that failed: {failures['answer_failures']}.",
        "",
        "## Question sets",
        "",
    ]
    lines += _table(
        ["set", "questions", "seeds/clusters", "flagged", "dropped", "note"],
        (
            [name, str(s["questions"]), str(s["clusters"]), str(s["flagged"]), str(s["dropped"]), s["note"]]
            for name, s in summary["sets"].items()
        ),
    )
    for set_name, title in SET_TITLES.items():
        rows = [r for r in summary["rows"] if r["set"] == set_name]
        pairs = [p for p in summary["pairwise"] if p["set"] == set_name]
        if not rows and not pairs:
            continue
        lines += ["", f"## {set_name}: {title}"]
        for name in dict.fromkeys(r["candidate"] for r in rows):
            mine = [r for r in rows if r["candidate"] == name]
            metrics = [m for m in METRICS if any(m in r["metrics"] for r in mine)]
            lines += ["", f"### {name}", ""]
            lines += _table(
                ["topic", "n", *(_LABELS[m] for m in metrics), "failed"],
                (
                    [
                        r["topic"],
                        str(max((e["n"] for e in r["metrics"].values()), default=0)),
                        *(_cell(r["metrics"].get(m), rate="score" not in m) for m in metrics),
                        str(r["failed"]),
                    ]
                    for r in mine
                ),
            )
        if pairs:
            lines += ["", f"### Pairwise ({set_name}): win rate of A over B", ""]
            lines += _table(
                [
                    "A",
                    "B",
                    "topic",
                    "n",
                    "win rate (judge)",
                    "ties",
                    "order-inconsistent",
                    "failed",
                    "win rate (scores)",
                ],
                (
                    [
                        p["a"],
                        p["b"],
                        p["topic"],
                        str(p["comparisons"]),
                        _cell(p["win_rate"], rate=True),
                        str(p["ties"]),
                        "–" if p["order_inconsistency"] is None else f"{p['order_inconsistency']:.1%}",
                        str(p["failed"]),
                        _cell(p["score_win_rate"], rate=True),
                    ]
                    for p in pairs
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
