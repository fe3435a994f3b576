"""The evaluation report's figures, hand-drawn SVG like the data report's (no plotting dependency).

* :func:`forest`: one row per candidate, its estimate as a dot and its interval as a line; the reader
  sees at a glance which intervals overlap.
* :func:`win_rates`: one bar per pair of candidates, A's win rate over B with its interval, the 50%
  line (a coin), and the length-controlled win rate as a hollow diamond.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["Estimate", "forest", "win_rates"]

WIDTH = 560
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
_AXIS, _GRID, _INK, _MUTED = "#8a93a3", "#e6e9ef", "#1d2330", "#5b6475"
_BLUE, _ORANGE = "#4c72b0", "#dd8452"


@dataclass(frozen=True)
class Estimate:
    """A labelled value with its interval."""

    label: str
    value: float
    low: float
    high: float
    extra: float | None = None  # win_rates: the length-controlled win rate


def _frame(height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" {_FONT} font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>'
        f'<text x="10" y="18" font-size="13" font-weight="600" fill="{_INK}">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _cut(label: str, size: int = 30) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def _axis(lo: float, hi: float, left: float, right: float, y0: float, y1: float, ticks: Sequence[float],
          fmt: str) -> tuple[list[str], float, float]:  # fmt: skip
    """Vertical grid lines at ``ticks`` and their labels under the plot; returns (body, scale, x0)."""
    scale = (right - left) / (hi - lo)
    body = []
    for t in ticks:
        x = left + (t - lo) * scale
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y1}" stroke="{_GRID}"/>')
        body.append(
            f'<text x="{x:.1f}" y="{y1 + 14}" text-anchor="middle" fill="{_MUTED}">{fmt.format(t)}</text>'
        )
    return body, scale, left - lo * scale


def forest(title: str, rows: Sequence[Estimate], *, lo: float, hi: float, rate: bool = False) -> str:
    """Each row's estimate and interval on a common axis from ``lo`` to ``hi``."""
    row, top = 24, 30
    labels = [_cut(r.label) for r in rows]
    label_w = min(220, 14 + 6.4 * max((len(t) for t in labels), default=4))
    right = WIDTH - 70
    y1 = top + row * max(len(rows), 1)
    height = y1 + 26
    ticks = (
        [lo + i * (hi - lo) / 5 for i in range(6)] if rate else list(range(math.ceil(lo), math.floor(hi) + 1))
    )
    body, scale, x0 = _axis(lo, hi, label_w, right, top, y1, ticks, "{:.0%}" if rate else "{:g}")
    for i, (label, r) in enumerate(zip(labels, rows, strict=True)):
        y = top + i * row + row / 2
        x, a, b = (x0 + min(max(v, lo), hi) * scale for v in (r.value, r.low, r.high))
        shown = f"{r.value:.1%}" if rate else f"{r.value:.2f}"
        interval = f"[{r.low:.1%}, {r.high:.1%}]" if rate else f"[{r.low:.2f}, {r.high:.2f}]"
        body.append(
            f'<text x="{label_w - 8:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="{_INK}">{escape(label)}</text>'
        )
        body.append(
            f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_BLUE}" stroke-width="2"/>'
        )
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{_BLUE}"><title>{escape(r.label)}: {shown} '
            f"{interval}</title></circle>"
        )
        body.append(f'<text x="{right + 6}" y="{y + 4:.1f}" fill="{_MUTED}">{shown}</text>')
    body.append(f'<line x1="{label_w}" x2="{right}" y1="{y1}" y2="{y1}" stroke="{_AXIS}"/>')
    return _frame(height, body, title)


def win_rates(title: str, pairs: Sequence[Estimate]) -> str:
    """One bar per pair: the win rate (0-100%) with its interval, the 50% line, the length-controlled
    win rate as a hollow diamond."""
    row, top = 26, 44
    labels = [_cut(p.label, 40) for p in pairs]
    label_w = min(260, 14 + 6.4 * max((len(t) for t in labels), default=4))
    right = WIDTH - 56
    y1 = top + row * max(len(pairs), 1)
    height = y1 + 26
    body, scale, x0 = _axis(0.0, 1.0, label_w, right, top, y1, [0, 0.25, 0.5, 0.75, 1], "{:.0%}")
    body.append(f'<rect x="{label_w}" y="24" width="10" height="10" fill="{_BLUE}"/>')
    body.append(f'<text x="{label_w + 14}" y="33" fill="{_INK}">win rate (judge)</text>')
    body.append(
        f'<path d="M {label_w + 125} 29 l 5 -5 l 5 5 l -5 5 z" fill="#fff" stroke="{_ORANGE}" stroke-width="2"/>'
    )
    body.append(f'<text x="{label_w + 144}" y="33" fill="{_INK}">at equal length</text>')
    for i, (label, p) in enumerate(zip(labels, pairs, strict=True)):
        y = top + i * row
        mid = y + row / 2
        w = max(p.value, 0.0) * scale
        a, b = (x0 + v * scale for v in (p.low, p.high))
        body.append(
            f'<text x="{label_w - 8:.1f}" y="{mid + 4:.1f}" text-anchor="end" fill="{_INK}">{escape(label)}</text>'
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 5}" width="{max(w, 1):.1f}" height="{row - 10}" fill="{_BLUE}" '
            f'fill-opacity="0.8"><title>{escape(p.label)}: {p.value:.1%} [{p.low:.1%}, {p.high:.1%}]</title></rect>'
        )
        body.append(
            f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="{_INK}" stroke-width="1.5"/>'
        )
        if p.extra is not None:
            x = x0 + p.extra * scale
            body.append(
                f'<path d="M {x - 5:.1f} {mid:.1f} l 5 -5 l 5 5 l -5 5 z" fill="#fff" stroke="{_ORANGE}" '
                f'stroke-width="2"><title>at equal length: {p.extra:.1%}</title></path>'
            )
        body.append(f'<text x="{right + 6}" y="{mid + 4:.1f}" fill="{_MUTED}">{p.value:.0%}</text>')
    half = x0 + 0.5 * scale
    body.append(
        f'<line x1="{half:.1f}" x2="{half:.1f}" y1="{top - 4}" y2="{y1}" stroke="{_INK}" stroke-dasharray="4 3"/>'
    )
    body.append(f'<line x1="{label_w}" x2="{right}" y1="{y1}" y2="{y1}" stroke="{_AXIS}"/>')
    return _frame(height, body, title)
