"""Charts as server-rendered SVG: bars per metric, a histogram per scorer.

Why SVG from the server rather than a JavaScript chart library: the values are known
when the page renders, the page works with scripts off, nothing is vendored, and each
value is text in the DOM (a screen reader reads it; a browser test compares it with
what the API reports). Colours come from the stylesheet's classes, so light and dark
follow ``prefers-color-scheme``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

BAR_HEIGHT = 22
GAP = 6
LABEL_WIDTH = 200
PLOT_WIDTH = 360
VALUE_WIDTH = 90


def number(value: float) -> str:
    """A value as the charts and tables show it: 4 decimals at most, no trailing zeros."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def metric_bars(metrics: Mapping[str, float], title: str = "Metrics") -> Markup:
    """One horizontal bar per metric, scaled to the larger of 1 and the largest value
    (most metrics are rates in [0, 1]; a mean relevance reaches 2)."""
    items = list(metrics.items())
    if not items:
        return Markup("")
    top = max([1.0, *(abs(v) for _, v in items)])
    height = len(items) * (BAR_HEIGHT + GAP) + GAP
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}" data-chart="metrics">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (name, value) in enumerate(items):
        y = GAP + i * (BAR_HEIGHT + GAP)
        w = max(0.0, PLOT_WIDTH * abs(value) / top)
        parts.append(
            f'<g class="bar" data-metric="{escape(name)}" data-value="{value!r}">'
            f'<text class="label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}"'
            f' text-anchor="end">{escape(name)}</text>'
            f'<rect class="track" x="{LABEL_WIDTH}" y="{y}" width="{PLOT_WIDTH}"'
            f' height="{BAR_HEIGHT}" rx="3"/>'
            f'<rect class="fill" x="{LABEL_WIDTH}" y="{y}" width="{w:.1f}"'
            f' height="{BAR_HEIGHT}" rx="3"/>'
            f'<text class="value" x="{LABEL_WIDTH + PLOT_WIDTH + 8}"'
            f' y="{y + BAR_HEIGHT * 0.7:.1f}">{number(value)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(scorer: str, bins: Sequence[tuple[str, int]]) -> Markup:
    """Vertical bars, one per bin, its count written above it and its label below."""
    if not bins:
        return Markup("")
    top = max([1, *(n for _, n in bins)])
    col, plot_h, pad = 44, 120, 36
    width = len(bins) * col + 16
    height = plot_h + pad + 20
    title = f"Scores of {scorer}, cases per bin"
    parts = [
        # Its own width: a 2-bin histogram drawn at 460 px would be mostly bar.
        f'<svg class="chart histogram" width="{width}" viewBox="0 0 {width} {height}"'
        ' role="img"'
        f' aria-label="{escape(title)}" data-chart="histogram" data-scorer="{escape(scorer)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, count) in enumerate(bins):
        x = 8 + i * col
        h = plot_h * count / top
        y = 20 + plot_h - h
        parts.append(
            f'<g class="bin" data-bin="{escape(label)}" data-count="{count}">'
            f'<rect class="fill" x="{x + 4}" y="{y:.1f}" width="{col - 8}" height="{h:.1f}"/>'
            f'<text class="count" x="{x + col / 2}" y="{y - 4:.1f}" text-anchor="middle">'
            f"{count}</text>"
            f'<text class="label" x="{x + col / 2}" y="{20 + plot_h + 16}"'
            f' text-anchor="middle">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# One colour class per run of a comparison (dashboard.css .s0 … .s5).
SERIES = 6


def compare_bars(
    runs: Sequence[str], metrics: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> Markup:
    """Grouped bars: per metric, one bar per run (in the comparison's order, a colour
    each), its value written beside it; a missing value is a dash, no bar."""
    if not metrics or not runs:
        return Markup("")
    values = [abs(v) for _, vs in metrics for v in vs if v is not None]
    top = max([1.0, *values])
    bar = 16
    group = len(runs) * (bar + 2) + GAP * 2
    legend = 22
    height = legend + len(metrics) * group + GAP
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart bars compare" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}" data-chart="compare">',
        f"<title>{escape(title)}</title>",
    ]
    for r, run in enumerate(runs):
        x = LABEL_WIDTH + r * (PLOT_WIDTH // max(1, len(runs)))
        parts.append(
            f'<g class="legend s{r % SERIES}"><rect class="fill" x="{x}" y="4" width="12"'
            f' height="12"/><text x="{x + 16}" y="15">{escape(run)}</text></g>'
        )
    for m, (name, vs) in enumerate(metrics):
        y0 = legend + m * group + GAP
        parts.append(
            f'<g class="group" data-metric="{escape(name)}">'
            f'<text class="label" x="{LABEL_WIDTH - 8}" y="{y0 + group / 2:.1f}"'
            f' text-anchor="end">{escape(name)}</text>'
        )
        for r, value in enumerate(vs):
            y = y0 + r * (bar + 2)
            w = 0.0 if value is None else max(0.0, PLOT_WIDTH * abs(value) / top)
            shown = "—" if value is None else number(value)
            exact = "" if value is None else repr(value)
            parts.append(
                f'<g class="bar s{r % SERIES}" data-run="{r}" data-value="{exact}">'
                f'<rect class="track" x="{LABEL_WIDTH}" y="{y}" width="{PLOT_WIDTH}"'
                f' height="{bar}" rx="2"/>'
                f'<rect class="fill" x="{LABEL_WIDTH}" y="{y}" width="{w:.1f}"'
                f' height="{bar}" rx="2"/>'
                f'<text class="value" x="{LABEL_WIDTH + PLOT_WIDTH + 8}"'
                f' y="{y + bar * 0.8:.1f}">{shown}</text></g>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
