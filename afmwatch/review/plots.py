"""Plots for the page as inline SVG text, drawn on the server: nothing to fetch, no JavaScript library.

Each function takes plain numbers and returns one `<svg>` element (escaped text inside), sized by
its viewBox so the page's CSS scales it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from afmwatch.render import afmhot_lut

DECISION_COLOURS = {"good": "#2e7d32", "bad": "#c62828", "review": "#ef8f00", "failed": "#6d6d6d"}
WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T, PAD_R = 640, 180, 44, 22, 10, 10


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _frame(title: str, y_max: float, y_label: str) -> list[str]:
    bottom = HEIGHT - PAD_B
    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_L}" y1="{bottom}" x2="{WIDTH - PAD_R}" y2="{bottom}" stroke="#999"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end" class="tick">{_fmt(y_max)}</text>',
        f'<text x="{PAD_L - 4}" y="{bottom}" text-anchor="end" class="tick">0</text>',
        f'<text x="{PAD_L + 4}" y="{PAD_T + 8}" class="axis">{escape(y_label)}</text>',
    ]
    return parts


def _y(value: float, y_max: float) -> float:
    return HEIGHT - PAD_B - (HEIGHT - PAD_B - PAD_T) * min(value, y_max) / y_max


def bars(
    values: Sequence[float | None],
    labels: Sequence[str],
    title: str,
    y_label: str,
    colour: str = "#1565c0",
    y_max: float | None = None,
    fmt: str = "{:.0f}",
) -> str:
    """A bar per value (None: no bar), every fourth label under the axis; each bar has a tooltip."""
    known = [v for v in values if v is not None]
    top = y_max if y_max is not None else max([1.0, *known])
    parts = _frame(title, top, y_label)
    step = (WIDTH - PAD_L - PAD_R) / max(1, len(values))
    for i, (value, label) in enumerate(zip(values, labels)):
        x = PAD_L + i * step
        if value is not None and value > 0:
            y = _y(value, top)
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, step - 2):.1f}" '
                f'height="{HEIGHT - PAD_B - y:.1f}" fill="{colour}"><title>{escape(label)}: '
                f"{escape(fmt.format(value))}</title></rect>"
            )
        if i % 4 == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" class="tick">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def trend(
    values: Sequence[float | None],
    decisions: Sequence[str],
    ids: Sequence[int],
    title: str,
    y_label: str,
    limits: Sequence[tuple[float, str]] = (),
) -> str:
    """One dot per scan in arrival order, coloured by decision, with the rule thresholds as dashed lines;
    a missing value (no retrace, say) leaves a gap."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    top = max([*known, *(t for t, _ in limits), 1e-9])
    top *= 1.1
    parts = _frame(title, top, y_label)
    step = (WIDTH - PAD_L - PAD_R) / max(1, len(values))
    for threshold, decision in limits:
        y = _y(threshold, top)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{WIDTH - PAD_R}" y2="{y:.1f}" stroke="{DECISION_COLOURS[decision]}" '
            f'stroke-dasharray="4 3"><title>{decision} above {_fmt(threshold)}</title></line>'
        )
    for i, (value, decision, scan_id) in enumerate(zip(values, decisions, ids)):
        if value is None or not math.isfinite(value):
            continue
        x, y = PAD_L + (i + 0.5) * step, _y(value, top)
        parts.append(
            f'<a href="/scan/{int(scan_id)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" '
            f'fill="{DECISION_COLOURS.get(decision, "#333")}"><title>scan {int(scan_id)}: {_fmt(value)} '
            f"({escape(decision)})</title></circle></a>"
        )
    if not known:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="axis">no values yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def colour_scale(low: str, high: str, width: int = 24, height: int = 256) -> str:
    """A vertical afmhot bar (the previews' colour map), `high` at the top and `low` at the bottom."""
    lut = afmhot_lut()
    stops = "".join(
        f'<stop offset="{i / 255:.3f}" stop-color="#{r:02x}{g:02x}{b:02x}"/>'
        for i, (r, g, b) in list(enumerate(lut.tolist()))[::15]
    )
    return (
        f'<svg class="scale" viewBox="0 0 {width + 70} {height + 20}" xmlns="http://www.w3.org/2000/svg" '
        'role="img" aria-label="colour scale">'
        f'<defs><linearGradient id="afmhot" x1="0" y1="1" x2="0" y2="0">{stops}</linearGradient></defs>'
        f'<rect x="0" y="10" width="{width}" height="{height}" fill="url(#afmhot)" stroke="#666"/>'
        f'<text x="{width + 6}" y="18" class="tick">{escape(high)}</text>'
        f'<text x="{width + 6}" y="{height + 10}" class="tick">{escape(low)}</text>'
        "</svg>"
    )
