"""The evaluation report: one self-contained HTML file to read an EVAL_DIR (``synthgen evaluate --html``).

Read from the files ``synthgen evaluate`` writes (``summary.json``, ``questions.jsonl``,
``answers.jsonl``, ``judgments.jsonl``), so it renders again from an old EVAL_DIR without rerunning
anything, and this layer needs nothing from :mod:`synthgen.evaluation`. Like the data report
(:mod:`synthgen.reports.html`): figures are hand-drawn SVG inlined as base64 ``data:`` images, every
text is escaped (answers are model output: a ``<script>`` in one stays text), and the page writes its
health into ``<body data-*>`` for a headless browser's ``--dump-dom``. The page: the headline table per
question set, a forest plot of each candidate's main metric, win-rate bars, and a browser of the
questions with every candidate's answer side by side, the reference and the judge's rationale.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from html import escape as html_escape
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from synthgen.errors import ConfigError
from synthgen.reports.eval_charts import Estimate, forest, win_rates
from synthgen.reports.html import data_uri

__all__ = ["METRIC_LABELS", "SET_TITLES", "format_estimate", "render_eval_html", "write_eval_html"]

SET_TITLES = {
    "paraphrases": "Paraphrases of training seeds (new wording of what was trained)",
    "heldout": "Held-out seeds (test split: never trained; a referral may be the right answer)",
    "out_of_scope": "Out-of-scope questions (must be declined and referred to the office)",
    "real": "Real student queries (coverage: answered correctly, wrongly, or declined)",
}
METRIC_LABELS = {
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
#: The metric each set's forest plot shows: the first one the set has.
MAIN_METRICS = ("score", "abstained", "correct")


def _e(value: Any) -> str:
    return html_escape(str(value), quote=True)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def format_estimate(estimate: Mapping[str, Any] | None, *, rate: bool, signed: bool = False) -> str:
    """``value [low, high]`` (rates in %), `` *`` when significant; ``–`` for no estimate."""
    if not estimate:
        return "–"
    scale, unit, digits = (100, "%", 1) if rate else (1, "", 2)
    v, lo, hi = (round(estimate[k] * scale, digits) + 0.0 for k in ("value", "low", "high"))  # no -0.0
    sign = "+" if signed else ""
    text = f"{v:{sign}.{digits}f}{unit} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"
    return text + (" *" if estimate.get("significant") else "")


def _cell(estimate: Mapping[str, Any] | None, metric: str, *, signed: bool = False) -> str:
    return format_estimate(estimate, rate="score" not in metric, signed=signed)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>"


def _headline(set_name: str, found: Mapping[str, Any]) -> str:
    head, pairs = found["headline"], found["pairs"]
    metrics = [m for m in METRIC_LABELS if any(m in c["metrics"] for c in head.values())]
    rows = [
        [
            name,
            str(max((e["n"] for e in c["metrics"].values()), default=0)),
            *(
                _cell(c["metrics"].get(m), m)
                + (f" ↑{', '.join(c['above'][m])}" if c.get("above", {}).get(m) else "")
                for m in metrics
            ),
            f"{c['words']['value']:.0f}" if c.get("words") else "–",
            str(c["failed"]),
        ]
        for name, c in head.items()
    ]
    html = [
        f'<h3 id="set-{_e(set_name)}">{_e(set_name)}: {_e(SET_TITLES.get(set_name, ""))}</h3>',
        _table(["candidate", "n", *(METRIC_LABELS[m] for m in metrics), "words", "failed"], rows, "headline"),
    ]
    if pairs:
        diff = [m for m in metrics if any(m in p["differences"] for p in pairs)]
        html.append(
            _table(
                ["A", "B", *(f"Δ {METRIC_LABELS[m]}" for m in diff), "win rate A>B", "at equal length"],
                [
                    [
                        p["a"],
                        p["b"],
                        *(_cell(p["differences"].get(m), m, signed=True) for m in diff),
                        _cell(p["win_rate"], "rate"),
                        _cell(p["lc_win_rate"], "rate"),
                    ]
                    for p in pairs
                ],
                "pairs",
            )
        )
    return "\n".join(html)


def _img(svg: str, caption: str) -> str:
    image = f'<img src="{data_uri(svg)}" alt="{_e(caption)}">'
    return f"<figure>{image}<figcaption>{_e(caption)}</figcaption></figure>"


def _figures(comparison: Mapping[str, Any]) -> list[str]:
    """Per set: a forest plot of its main metric, and win-rate bars when pairs were judged."""
    out = []
    for set_name, found in comparison["sets"].items():
        head = found["headline"]
        metric = next((m for m in MAIN_METRICS if any(m in c["metrics"] for c in head.values())), None)
        if metric is not None:
            rows = [
                Estimate(name, e["value"], e["low"], e["high"])
                for name, c in head.items()
                if (e := c["metrics"].get(metric))
            ]
            rate = metric != "score"
            svg = forest(f"{set_name}: {METRIC_LABELS[metric]}", rows, lo=0 if rate else 1, hi=1 if rate else 10,
                         rate=rate)  # fmt: skip
            out.append(_img(svg, f"{set_name}: each candidate's {METRIC_LABELS[metric]} with its interval"))
        bars = [
            Estimate(
                f"{p['a']} vs {p['b']}",
                w["value"],
                w["low"],
                w["high"],
                (p.get("lc_win_rate") or {}).get("value"),
            )
            for p in found["pairs"]
            if (w := p.get("win_rate"))
        ]
        if bars:
            caption = f"{set_name}: win rate of A over B (judge, both orders; ties half); ◇ at equal length"
            out.append(_img(win_rates(f"{set_name}: win rates", bars), caption))
    return out


def _contamination(summary: Mapping[str, Any]) -> tuple[dict[str, float | None], str]:
    """(flagged question id -> overlap, the section); nothing without a check."""
    found = summary.get("contamination")
    if not isinstance(found, Mapping):
        return {}, ""
    overlap = found.get("overlap") or {}
    flagged: dict[str, float | None] = {}
    rows = []
    for set_name, entry in (found.get("sets") or {}).items():
        if not isinstance(entry, Mapping):
            continue
        ids = [str(q) for q in entry.get("flagged") or []]
        flagged.update({q: overlap.get(q) for q in ids})
        rows.append([set_name, str(entry.get("checked", "?")), str(len(ids)), ", ".join(ids) or "–"])
    action = "dropped from the tables" if found.get("drop") else "kept in the tables (not dropped)"
    note = (
        f"<p>{_e(found.get('n', '?'))}-gram overlap of each question and reference with every training row; "
        f"threshold {_e(found.get('threshold', '?'))}. Flagged questions are {action}.</p>"
    )
    return flagged, "<h2>Contamination</h2>" + note + _table(["set", "checked", "flagged", "questions"], rows)


def _verdict(record: Mapping[str, Any]) -> tuple[str, str]:
    """(a one-line verdict, the judge's rationale) of one judgments.jsonl row."""
    verdict, mode = record.get("verdict"), record["mode"]
    if verdict is None:
        return f"{mode}: judge failed ({record.get('failure')})", ""
    rationale = str(verdict.get("rationale", ""))
    if mode in ("single", "multi_turn"):
        return f"{'score' if mode == 'single' else 'follow-up score'} {verdict['score']}", rationale
    if mode in ("claims", "recall"):
        counts: dict[str, int] = defaultdict(int)
        for claim in verdict.get("claims") or []:
            counts[claim["verdict"]] += 1
        what = "answer's claims" if mode == "claims" else "reference's claims"
        listed = "; ".join(f"{c['claim']} ({c['verdict']})" for c in verdict.get("claims") or [])
        return f"{what}: " + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "none"), listed
    if mode == "abstention":
        yes = {True: "yes", False: "no"}
        return (
            f"declined: {yes[bool(verdict['declined'])]}, referred: {yes[bool(verdict['referred'])]}",
            rationale,
        )
    if mode == "coverage":
        return f"coverage: {verdict['verdict']}", rationale
    return mode, rationale


def _answer(name: str, answer: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]) -> str:
    if answer is None or answer.get("answer") is None:
        reason = answer.get("failure") if answer else "not asked"
        text = f'<div class="text missing">no answer ({_e(reason)})</div>'
    else:
        text = f'<div class="text">{_e(answer["answer"])}</div>'
    verdicts = "".join(
        f'<div class="verdict"><b>{_e(line)}</b>'
        + (f'<div class="rationale">{_e(why)}</div>' if why else "")
        + "</div>"
        for line, why in (_verdict(r) for r in records)
    )
    return f'<div class="answer"><div class="who">{_e(name)}</div>{text}{verdicts}</div>'


def _card(
    q: Mapping[str, Any],
    candidates: Sequence[str],
    answers: Mapping[tuple[str, str], Mapping[str, Any]],
    judged: Mapping[tuple[str, str | None], list[Mapping[str, Any]]],
    flagged: Mapping[str, float | None],
) -> str:
    qid = q["id"]
    parts = [q["set"], q.get("topic"), f"seed {q['cluster']}", qid, *(q.get("flags") or [])]
    meta = '<div class="meta">' + " · ".join(_e(p) for p in parts if p)
    if qid in flagged:
        overlap = flagged[qid]
        shown = f" {overlap:.2f}" if isinstance(overlap, int | float) else ""
        meta += f' <span class="badge warn">contamination{shown}</span>'
    html = [f'<article class="card" data-set="{_e(q["set"])}">{meta}</div>']
    html.append(f'<div class="msg user"><span class="role">question</span>{_e(q["text"])}</div>')
    if q.get("follow_up"):
        html.append(f'<div class="msg user"><span class="role">follow-up</span>{_e(q["follow_up"])}</div>')
    if q.get("reference"):
        html.append(
            f'<div class="msg reference"><span class="role">reference</span>{_e(q["reference"])}</div>'
        )
    first = [
        _answer(n, answers.get((n, qid)), [r for r in judged.get((qid, n), []) if r["mode"] != "multi_turn"])
        for n in candidates
    ]
    html.append('<div class="answers">' + "".join(first) + "</div>")
    second = [
        _answer(
            n,
            answers.get((n, f"{qid}#2")),
            [r for r in judged.get((qid, n), []) if r["mode"] == "multi_turn"],
        )
        for n in candidates
        if (n, f"{qid}#2") in answers
    ]
    if second:
        html.append(
            '<details><summary>answers to the follow-up</summary><div class="answers">'
            + "".join(second)
            + "</div></details>"
        )
    pairwise = judged.get((qid, None), [])
    if pairwise:
        rows = [
            [f"{r['pair'][0]} vs {r['pair'][1]}", "first" if r["order"] == 1 else "swapped",
             (r["verdict"] or {}).get("winner", f"failed ({r.get('failure')})"),
             (r["verdict"] or {}).get("rationale", "")]
            for r in pairwise
        ]  # fmt: skip
        html.append(
            f"<details><summary>pairwise verdicts ({len(rows)}; in the swapped order A is the second "
            "candidate)</summary>" + _table(["pair", "order", "winner", "rationale"], rows) + "</details>"
        )
    return "".join(html) + "</article>"


def _header(summary: Mapping[str, Any], questions: int) -> str:
    failures = summary["failures"]
    badge = '<span class="badge warn">offline: placeholder verdicts</span>' if summary.get("offline") else ""
    stats = [
        ("candidates", len(summary.get("candidates") or [])),
        ("questions", questions),
        ("judge calls", failures["calls"]),
        ("judge failures", failures["parse_failures"] + failures["other_failures"]),
        ("answers failed", failures["answer_failures"]),
    ]
    cells = "".join(
        f'<div class="stat"><b>{_e(v)}</b><span class="muted">{_e(k)}</span></div>' for k, v in stats
    )
    boot = summary["bootstrap"]
    return (
        f'<header><h1>Evaluation: {_e(summary["name"])}</h1><p class="muted">{badge} judge '
        f"<code>{_e(summary['judge']['model'])}</code>; {boot['confidence']:.0%} intervals from "
        f"{_e(boot['samples'])} resamples of seeds (seed {_e(boot['seed'])})</p>"
        f'<div class="stats">{cells}</div></header>'
    )


# the data report's page (templates/page.html) with these rules added: answers side by side, verdicts
_EXTRA_CSS = """\
  .answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 10px; margin-top: 8px; }
  .answer { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; background: #fbfcfd; }
  .answer .who { font-weight: 600; margin-bottom: 4px; }
  .answer .text { white-space: pre-wrap; }
  .answer .text.missing { color: var(--muted); font-style: italic; }
  .verdict { font-size: 13px; margin-top: 6px; border-top: 1px dashed var(--line); padding-top: 4px; }
  .verdict .rationale { color: var(--muted); white-space: pre-wrap; }
  .msg.reference { background: #fff8e6; }
  table.headline td:first-child, table.pairs td:nth-child(-n+2) { font-weight: 600; }
  li.warn { color: #8a2b0f; }
  table.headline { margin-bottom: 6px; }
  table.pairs { margin-bottom: 22px; font-size: 13px; }
"""


def render_eval_html(eval_dir: str | Path) -> str:
    """The report page of an EVAL_DIR written by ``synthgen evaluate``."""
    eval_dir = Path(eval_dir)
    path = eval_dir / "summary.json"
    if not path.is_file():
        raise ConfigError(
            f"{path} not found", path=eval_dir, hint="write it first: synthgen evaluate EVAL_RECIPE --out DIR"
        )
    summary = json.loads(path.read_text(encoding="utf-8"))
    comparison = summary.get("comparison") or {"sets": {}, "min_topic_questions": "?"}
    candidates = [c["name"] for c in summary.get("candidates") or []]
    questions = [q for q in _jsonl(eval_dir / "questions.jsonl") if "dropped" not in q]
    answers = {(a["candidate"], a["question_id"]): a for a in _jsonl(eval_dir / "answers.jsonl")}
    judged: dict[tuple[str, str | None], list[Mapping[str, Any]]] = defaultdict(list)
    for r in _jsonl(eval_dir / "judgments.jsonl"):
        judged[(r["question_id"], r["candidate"])].append(r)
    flagged, contamination = _contamination(summary)
    warnings = "".join(f'<li class="warn">{_e(w)}</li>' for w in summary.get("warnings") or [])
    sections = [
        f"<ul>{warnings}</ul>" if warnings else "",
        "<h2>Headline</h2>",
        '<p class="muted">Cells: value [interval]. ↑x: significantly above candidate x (the paired '
        "difference on the same questions excludes 0, from two seeds or more). Pairs: A minus B; * the "
        "interval excludes 0 (win rates: 50%). Words: mean answer length (judges favour long answers; "
        "hence the win rate at equal length, AlpacaEval's length control).</p>",
        *(_headline(s, found) for s, found in comparison["sets"].items()),
        "<h2>Figures</h2>",
        '<div class="plots">' + "".join(_figures(comparison)) + "</div>",
        contamination,
    ]
    cards = [_card(q, candidates, answers, judged, flagged) for q in questions]
    template = Template(files("synthgen.reports").joinpath("templates/page.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=_e(f"{summary['name']}: synthgen evaluation"),
        extra_css=_EXTRA_CSS,
        header=_header(summary, len(questions)),
        sections="\n".join(sections),
        browser_id="questions",
        browser_title="Questions",
        browser_note="Every question kept, with each candidate's answer side by side, the reference and the "
        "judge's verdicts.",
        search_example=", e.g. heldout",
        cards="\n".join(cards),
    )


def write_eval_html(eval_dir: str | Path, path: str | Path) -> Path:
    """Write :func:`render_eval_html` of ``eval_dir`` to ``path`` (parents created)."""
    path = Path(path)
    page = render_eval_html(eval_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
