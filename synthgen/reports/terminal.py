"""Reports on a RUN_DIR: the terminal summary, and the HTML report (:mod:`synthgen.reports.html`).

Both render :func:`synthgen.reports.metrics.run_metrics`, so what the terminal says is what the page plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthgen.reports.metrics import run_metrics
from synthgen.rundir import RunDir

__all__ = ["report", "summary"]


def _dist(d: Mapping[str, Any]) -> str:
    if not d.get("n"):
        return "none"
    return f"median {d['p50']} (p90 {d['p90']}, {d['min']}..{d['max']})"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _runs(result: Mapping[str, Any], run_dir: Path) -> list[str]:
    lines = [
        f"{result['recipe']} ({'offline' if result['offline'] else 'online'}) in {run_dir}",
        f"splits: {result['splits']}",
    ]
    for name, c in result["steps"].items():
        lines.append(
            f"{name} [{c['generator']} v{c['version']} -> {c['output']}]: {c['items']} items: "
            f"{c['ok']} ok, {c['failed']} failed, {c['rejected']} rejected, {c['not_started']} not started; "
            f"{c['rows']} rows"
        )
        usage = c.get("usage") or {}
        if usage:
            lines.append(
                f"  usage: {usage.get('requests', 0)} requests, {usage.get('prompt_tokens', 0)} prompt + "
                f"{usage.get('completion_tokens', 0)} completion tokens, ${usage.get('cost_usd', 0.0):.4f}, "
                f"{c.get('seconds', 0.0):.1f} s"
            )
        for label, reasons in (("failures", c["failures"]), ("rejections", c["rejections"])):
            if reasons:
                lines.append(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    total = result["usage"]["total"]
    unpriced = result["usage"].get("unpriced_models") or []
    cost = f"${result['cost_usd']:.4f}" + (f" + n/a for unpriced {', '.join(unpriced)}" if unpriced else "")
    prices = result.get("prices") or {}
    source = f" (prices: {prices['source']} {prices.get('version', '')})".replace(" )", ")") if prices else ""
    lines.append(
        f"tokens: {total['prompt_tokens']} prompt + {total['completion_tokens']} completion; "
        f"cost {cost}{source}; cache hits {result['usage']['cache_hits']}"
    )
    lines.append(f"models: {', '.join(result['response_models'])}")
    return lines


def _metrics(m: Mapping[str, Any]) -> list[str]:
    rows, cov, lengths, div = m["rows"], m["coverage"], m["lengths"], m["diversity"]
    splits = rows["splits"]
    lines = [
        "rows: "
        + "; ".join(
            f"{c} {rows[c]} ({', '.join(f'{s} {n}' for s, n in splits[c].items()) or 'none'})"
            for c in ("sft", "prefs", "seeds")
        ),
        f"coverage: {cov['used']}/{cov['seeds']} seeds used; sft rows per seed "
        f"{_dist(cov['rows_per_seed']['sft'])}; prefs rows per seed {_dist(cov['rows_per_seed']['prefs'])}",
    ]
    if cov["unused_seeds"]:
        shown = cov["unused_seeds"][:10]
        more = f" (+{len(cov['unused_seeds']) - 10} more)" if len(cov["unused_seeds"]) > 10 else ""
        lines.append(f"  unused seeds ({len(cov['unused_seeds'])}): {', '.join(shown)}{more}")
    for topic, t in cov["topics"].items():
        unused = f", {t['unused']} unused" if t["unused"] else ""
        lines.append(f"  {topic}: {t['seeds']} seeds{unused}, {t['sft']} sft, {t['prefs']} prefs")
    tokens = lengths["tokens"]
    lines += [
        f"user turns per dialogue: {_dist(lengths['user_turns_per_dialogue'])}",
        f"tokens ({lengths['token_counter'].split(' ')[0]}): user turn {_dist(tokens['user_turn'])}; "
        f"assistant turn {_dist(tokens['assistant_turn'])}; dialogue {_dist(tokens['dialogue'])}",
    ]
    if tokens["chosen"].get("n"):
        lines.append(f"  chosen {_dist(tokens['chosen'])}; rejected {_dist(tokens['rejected'])}")
    lines.append(
        "diversity (distinct-1 / distinct-2 / 3-shingle Jaccard distance): "
        + "; ".join(
            f"{role} {_num(d['distinct_1'])} / {_num(d['distinct_2'])} / {_num(d['shingle_diversity'])}"
            for role, d in ((r, div[r]) for r in ("user", "assistant", "chosen"))
            if d["turns"]
        )
    )
    near = div["near_duplicates"]
    lines.append(
        f"near duplicates (Jaccard >= {near['sft']['threshold']}): "
        + "; ".join(f"{c} {near[c]['flagged']}/{near[c]['rows']} ({_pct(near[c]['rate'])})" for c in near)
    )
    for c in near:
        lines += [f"  {c} {e['row']}: {e['detail']}" for e in near[c]["examples"]]
    lang = m["language"]
    others = ", ".join(f"{k}={v}" for k, v in lang["counts"].items() if k not in (lang["expected"], "und"))
    lines.append(
        f"language: {_pct(lang['rate'])} of turns in {lang['expected']!r} ("
        + ", ".join(f"{r} {_pct(v)}" for r, v in lang["by_role"].items())
        + f"); {lang['undetermined']} too short to tell"
        + (f"; other: {others}" if others else "")
    )
    judge = m["judge"]
    if judge["pairs"]:
        lines.append(
            f"judge ({', '.join(judge['judge_models'])}): {judge['pairs']} pairs; chosen "
            f"{_dist(judge['score_chosen'])}; rejected {_dist(judge['score_rejected'])}; margin "
            f"{_dist(judge['margin'])}; {judge['not_preferred']} ties or inversions"
        )
    for kind in ("failures", "rejections"):
        for step, reasons in m[kind].items():
            for reason, r in reasons.items():
                if r["example"]:
                    lines.append(f"  {step} {kind[:-1]} {reason} (x{r['count']}), e.g.: {r['example']}")
    return lines


def summary(run_dir: str | Path, *, metrics: Mapping[str, Any] | None = None) -> str:
    """Counts per step, failure and rejection reasons, tokens and cost, then the dataset metrics."""
    run_dir = Path(run_dir)
    result = RunDir(run_dir).read_result()
    metrics = metrics if metrics is not None else run_metrics(run_dir, result=result)
    return "\n".join([*_runs(result, run_dir), *_metrics(metrics)])


def report(run_dir: str | Path, *, html: str | Path | None = None, sample: int = 50) -> str:
    """The terminal summary; with ``html``, also write the self-contained HTML report there."""
    run_dir = Path(run_dir)
    metrics = run_metrics(run_dir)
    if html is not None:
        from synthgen.reports.html import write_html

        write_html(run_dir, html, metrics=metrics, sample=sample)
    return summary(run_dir, metrics=metrics)
