"""The HTML report: one self-contained file to look at a dataset before training on it.

Plots are SVG drawn here by hand and inlined as base64 ``data:`` images (no plotting dependency:
matplotlib alone outweighs synthgen; no remote asset: the file opens offline, from a mail attachment or
an artifact store). The page carries a deterministic sample of dialogues and preference pairs (chosen
and rejected side by side, with scores and the judge's rationale), filtered client-side by a search box;
``?q=words`` pre-fills the search. The page writes its own health into ``<body data-*>`` (images decoded,
cards shown, errors caught) so a headless browser's ``--dump-dom`` can check it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from html import escape as html_escape
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any
from xml.sax.saxutils import escape

from synthgen.reports.metrics import run_metrics
from synthgen.rundir import RunDir

__all__ = ["render_html", "write_html"]

# -- charts: hand-drawn SVG -----------------------------------------------------------------------

WIDTH = 520
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
_AXIS = "#8a93a3"
_GRID = "#e6e9ef"


def data_uri(svg: str) -> str:
    """base64 (not percent-encoding): immune to the quotes and # in the markup."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _svg(height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" {_FONT} font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>'
        f'<text x="10" y="18" font-size="13" font-weight="600" fill="#1d2330">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _ticks(top: float, count: int = 4) -> list[float]:
    """0 and round steps (1, 2 or 5 x 10^k) up to at least ``top``."""
    raw = max(top, 1) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if step < 1 and top >= 1:
        step = 1
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1 if top > 0 else 2)]


def histogram(
    title: str,
    edges: Sequence[float],
    series: Sequence[tuple[str, Sequence[int], str]],
    xlabel: str = "",
    *,
    unit: bool = False,
) -> str:
    """Bars per bin ``[edges[i], edges[i+1])``; several series share the bins side by side. ``unit``
    bins (one per integer value) are labelled by their value, other bins by their edges."""
    height, left, right, top, bottom = 260, 46, 14, 30, 42
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    bins = len(edges) - 1
    ticks = _ticks(max((max(c) for _, c, _ in series if c), default=1))
    y_max = ticks[-1] or 1
    body = []
    for tick in ticks:
        y = top + plot_h - tick / y_max * plot_h
        body.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6475">{_fmt(tick)}</text>'
        )
    slot = plot_w / bins
    width = slot * 0.84 / len(series)
    for s, (name, counts, color) in enumerate(series):
        for i, count in enumerate(counts):
            h = count / y_max * plot_h
            x = left + i * slot + slot * 0.08 + s * width
            body.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{max(width, 1):.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{escape(name)}: {count}</title></rect>'
            )
    labels = (
        [(left + (i + 0.5) * slot, e) for i, e in enumerate(edges[:-1])]
        if unit
        else [(left + i * slot, e) for i, e in enumerate(edges)]
    )
    every = math.ceil(len(labels) / 12)
    for x, value in labels[::every]:
        body.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#5b6475">'
            f"{_fmt(value)}</text>"
        )
    body.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{_AXIS}"/>'
    )
    if xlabel:
        body.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="#1d2330">'
            f"{escape(xlabel)}</text>"
        )
    if len(series) > 1:
        for s, (name, _, color) in enumerate(series):
            x = WIDTH - right - 110
            y = 12 + s * 14
            body.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>')
            body.append(f'<text x="{x + 14}" y="{y + 9}" fill="#1d2330">{escape(name)}</text>')
    return _svg(height, body, title)


def bars(title: str, items: Sequence[tuple[str, float]], color: str = "#4c72b0") -> str:
    """One horizontal bar per (label, value), in the given order; labels past 34 characters are cut."""
    row, top = 22, 30
    labels = [label if len(label) <= 34 else label[:33] + "…" for label, _ in items]
    label_w = min(230, 12 + 6.4 * max((len(label) for label in labels), default=4))
    bar_w = WIDTH - label_w - 80
    height = top + row * max(len(items), 1) + 10
    peak = max((v for _, v in items), default=0) or 1
    body = []
    for i, (label, (_, value)) in enumerate(zip(labels, items, strict=True)):
        y = top + i * row
        w = value / peak * bar_w
        body.append(
            f'<text x="{label_w - 6:.1f}" y="{y + 15}" text-anchor="end" fill="#1d2330">'
            f"{escape(label)}</text>"
        )
        body.append(
            f'<rect x="{label_w:.1f}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row - 8}" fill="{color}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
        )
        body.append(f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" fill="#5b6475">{_fmt(value)}</text>')
    return _svg(height, body, title)


# -- page -----------------------------------------------------------------------------------------

_CHOSEN, _REJECTED, _BLUE = "#2a9d8f", "#e76f51", "#4c72b0"


def _e(value: Any) -> str:
    return html_escape(str(value), quote=True)


def _img(svg: str, caption: str) -> str:
    image = f'<img src="{data_uri(svg)}" alt="{_e(caption)}">'
    return f"<figure>{image}<figcaption>{_e(caption)}</figcaption></figure>"


def _hist(title: str, dist: Mapping[str, Any], xlabel: str, color: str = _BLUE) -> list[str]:
    if not dist.get("n"):
        return []
    h = dist["histogram"]
    caption = f"{title}: n={dist['n']}, median {dist['p50']}, p90 {dist['p90']}, max {dist['max']}"
    svg = histogram(title, h["edges"], [(xlabel, h["counts"], color)], xlabel, unit=h["unit"])
    return [_img(svg, caption)]


def _plots(m: Mapping[str, Any]) -> list[str]:
    cov, lengths, judge = m["coverage"], m["lengths"], m["judge"]
    tokens = lengths["tokens"]
    plots: list[str] = []
    topics = [(t, float(v["sft"])) for t, v in cov["topics"].items()]
    if any(v for _, v in topics):
        plots.append(_img(bars("sft rows per topic", topics), "Dialogues per topic"))
    plots += _hist("sft rows per seed", cov["rows_per_seed"]["sft"], "rows planned from the seed")
    plots += _hist("User turns per dialogue", lengths["user_turns_per_dialogue"], "user turns")
    plots += _hist("Tokens per user turn", tokens["user_turn"], "tokens")
    plots += _hist("Tokens per assistant turn", tokens["assistant_turn"], "tokens")
    plots += _hist("Tokens per dialogue", tokens["dialogue"], "tokens (chat format)")
    if judge["pairs"]:
        edges = judge["score_chosen"]["histogram"]["edges"]
        series = [
            ("chosen", judge["score_chosen"]["histogram"]["counts"], _CHOSEN),
            ("rejected", judge["score_rejected"]["histogram"]["counts"], _REJECTED),
        ]
        caption = f"Judge scores of {judge['pairs']} pairs ({', '.join(judge['judge_models'])})"
        plots.append(_img(histogram("Judge scores", edges, series, "score"), caption))
        plots += _hist("Chosen minus rejected score", judge["margin"], "margin", _CHOSEN)
    reasons = [
        (f"{step}: {reason}", float(r["count"]))
        for kind in ("failures", "rejections")
        for step, by_reason in m[kind].items()
        for reason, r in by_reason.items()
    ]
    if reasons:
        plots.append(
            _img(bars("Failures and rejections", reasons, _REJECTED), "Items and rows dropped, by reason")
        )
    steps = [(name, float(u["total_tokens"])) for name, u in m["usage"]["steps"].items()]
    if any(v for _, v in steps):
        plots.append(_img(bars("Tokens per step", steps), "Prompt + completion tokens paid per step"))
    return plots


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        numeric = isinstance(v, int | float) and not isinstance(v, bool)
        return f'<td class="n">{_e(v)}</td>' if numeric else f"<td>{_e(v)}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _header(m: Mapping[str, Any], run_dir: Path) -> str:
    cov, usage = m["coverage"], m["usage"]
    badges = '<span class="badge warn">offline demo data</span>' if m["offline"] else ""
    badges += "" if m["complete"] else '<span class="badge warn">incomplete: items not started</span>'
    stats = [
        ("dialogues (sft)", m["rows"]["sft"]),
        ("preference pairs", m["rows"]["prefs"]),
        ("seeds used", f"{cov['used']} / {cov['seeds']}"),
        (f"in {m['language']['expected']!r}", _pct(m["language"]["rate"])),
        ("tokens", f"{usage['total']['total_tokens']:,}"),
        ("cost", f"${usage['cost_usd']:.4f}"),
    ]
    cells = "".join(
        f'<div class="stat"><b>{_e(v)}</b><span class="muted">{_e(k)}</span></div>' for k, v in stats
    )
    return (
        f'<header><h1>{_e(m["recipe"])}</h1><p class="muted">{badges} synthgen report of '
        f'<code>{_e(run_dir)}</code></p><div class="stats">{cells}</div></header>'
    )


_STEP_COLUMNS = (
    "step", "generator", "items", "ok", "failed", "rejected", "not started", "rows", "requests", "tokens",
    "USD", "seconds",
)  # fmt: skip


def _sections(m: Mapping[str, Any]) -> str:
    cov, div, lang = m["coverage"], m["diversity"], m["language"]
    usage = m["usage"]["steps"]
    steps = [
        [name, f"{c['generator']} v{c['version']}", c["items"], c["ok"], c["failed"], c["rejected"],
         c["not_started"], c["rows"], usage[name]["requests"], usage[name]["total_tokens"],
         f"{usage[name]['cost_usd']:.4f}", usage[name]["seconds"]]
        for name, c in m["steps"].items()
    ]  # fmt: skip
    topics = [[t, v["seeds"], v["unused"], v["sft"], v["prefs"]] for t, v in cov["topics"].items()]
    unused = ", ".join(cov["unused_seeds"]) or "none"
    diversity = [
        [role, d["turns"], d["distinct_1"], d["distinct_2"], d["shingle_diversity"]]
        for role, d in ((r, div[r]) for r in ("user", "assistant", "chosen"))
    ]
    near = div["near_duplicates"]
    near_rows = [[c, near[c]["rows"], near[c]["flagged"], _pct(near[c]["rate"])] for c in near]
    examples = "".join(
        f"<li>{_e(c)} {_e(e['row'])}: {_e(e['detail'])}</li>" for c in near for e in near[c]["examples"]
    )
    dropped = [
        [step, kind[:-1], reason, r["count"], r["example"] or ""]
        for kind in ("failures", "rejections")
        for step, by_reason in m[kind].items()
        for reason, r in by_reason.items()
    ]
    languages = ", ".join(f"{k}: {v}" for k, v in lang["counts"].items())
    by_role = ", ".join(f"{r} {_pct(v)}" for r, v in lang["by_role"].items())
    return "\n".join(
        [
            "<h2>Steps</h2>",
            _table(_STEP_COLUMNS, steps),
            "<h2>Plots</h2>",
            '<div class="plots">' + "".join(_plots(m)) + "</div>",
            "<h2>Coverage</h2>",
            f"<p>{cov['used']} of {cov['seeds']} seeds have rows planned from them. "
            f"Unused seeds: {_e(unused)}</p>",
            _table(["topic", "seeds", "unused", "sft rows", "prefs rows"], topics),
            "<h2>Diversity</h2>",
            '<p class="muted">distinct-n: unique n-grams / all n-grams over one role\'s turns. 3-shingle '
            "diversity: mean pairwise Jaccard distance of word 3-shingle sets (exact, on a deterministic "
            "sample); 1 means no two texts share a three-word phrase.</p>",
            _table(["texts", "turns", "distinct-1", "distinct-2", "3-shingle diversity"], diversity),
            f"<p>Near duplicates (Jaccard &ge; {near['sft']['threshold']}):</p>",
            _table(["config", "rows", "flagged", "rate"], near_rows),
            f"<ul>{examples}</ul>" if examples else "",
            "<h2>Language</h2>",
            f"<p>{_pct(lang['rate'])} of turns read as {_e(lang['expected'])} ({_e(by_role)}); "
            f"{lang['undetermined']} too short to tell. Detected: {_e(languages) or 'none'}.</p>",
            "<h2>Failures and rejections</h2>",
            _table(["step", "kind", "reason", "count", "example"], dropped) if dropped else "<p>None.</p>",
        ]
    )


def _message(msg: Mapping[str, Any]) -> str:
    role = _e(msg["role"])
    inner = f'<div class="msg {role}"><span class="role">{role}</span>{_e(msg["content"])}</div>'
    system = f'<details class="nosearch"><summary>system prompt</summary>{inner}</details>'
    return system if msg["role"] == "system" else inner


def _meta(*parts: Any) -> str:
    return '<div class="meta">' + " · ".join(_e(p) for p in parts if p) + "</div>"


def _dialogue_card(row: Mapping[str, Any]) -> str:
    seeds = ", ".join(row.get("seed_ids") or [])
    meta = _meta(
        "dialogue", row.get("topic"), row.get("persona"), row["split"], f"seeds: {seeds}", row.get("model")
    )
    return f'<article class="card dialogue">{meta}{"".join(_message(m) for m in row["messages"])}</article>'


def _side(kind: str, content: str, score: float, candidates: Sequence[Mapping[str, Any]]) -> str:
    match = next((c for c in candidates if c["content"] == content), None)
    rationale = f'<div class="rationale">{_e(match["rationale"])}</div>' if match else ""
    return (
        f'<div class="side {kind}"><div class="score">{kind} · score {_e(score)}</div>'
        f'<div class="text">{_e(content)}</div>{rationale}</div>'
    )


def _pair_card(row: Mapping[str, Any]) -> str:
    candidates = row.get("candidates") or []
    margin = float(row["score_chosen"]) - float(row["score_rejected"])
    meta = _meta(
        "pair", row.get("topic"), row["split"], f"margin {margin:.2f}", f"judge {row.get('judge_model')}"
    )
    all_candidates = _table(
        ["variant", "model", "score", "rationale", "answer"],
        [[c["variant"], c["model"], c["score"], c["rationale"], c["content"]] for c in candidates],
    )
    prompt = "".join(_message(m) for m in row["prompt"])
    return (
        f'<article class="card preference">{meta}{prompt}<div class="sides">'
        + _side("chosen", row["chosen"][0]["content"], row["score_chosen"], candidates)
        + _side("rejected", row["rejected"][0]["content"], row["score_rejected"], candidates)
        + f"</div><details><summary>all {len(candidates)} candidates</summary>{all_candidates}</details>"
        + "</article>"
    )


def _sample(rows: Sequence[dict[str, Any]], size: int, key: str) -> list[dict[str, Any]]:
    """The rows whose id hashes first (stable across runs and row order), shown by topic."""
    ranked = sorted(rows, key=lambda r: hashlib.sha256(str(r.get(key)).encode()).hexdigest())[:size]
    return sorted(ranked, key=lambda r: (str(r.get("topic")), str(r.get(key))))


def render_html(run_dir: str | Path, *, metrics: Mapping[str, Any] | None = None, sample: int = 50) -> str:
    """The report page; ``sample`` dialogues and ``sample`` pairs at most."""
    run_dir = Path(run_dir)
    m = metrics if metrics is not None else run_metrics(run_dir)
    dialogues = _sample(RunDir(run_dir).read_rows("sft"), sample, "dialogue_id")
    pairs = _sample(
        [
            {**r, "_id": r["prompt_id"] + r["chosen"][0]["content"]}
            for r in RunDir(run_dir).read_rows("prefs")
        ],
        sample,
        "_id",
    )
    cards = [_dialogue_card(r) for r in dialogues] + [_pair_card(r) for r in pairs]
    note = (
        f"{len(dialogues)} of {m['rows']['sft']} dialogues and {len(pairs)} of {m['rows']['prefs']} "
        "preference pairs (a fixed sample, by hash of their id)."
    )
    template = Template(files("synthgen.reports").joinpath("templates/page.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=_e(f"{m['recipe']}: synthgen report"),
        extra_css="",
        header=_header(m, run_dir),
        sections=_sections(m),
        browser_id="sample",
        browser_title="Sample",
        browser_note=_e(note),
        search_example="",
        cards="\n".join(cards),
    )


def write_html(
    run_dir: str | Path, path: str | Path, *, metrics: Mapping[str, Any] | None = None, sample: int = 50
) -> Path:
    """Write :func:`render_html` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run_dir, metrics=metrics, sample=sample), encoding="utf-8")
    return path
