"""Inline SVG charts of a report: grouped bars with interval whiskers, and line charts of training logs.

Plain SVG strings (no plotting library, no script): the report stays one HTML file a browser opens offline.
Every text that is not this module's own (run labels, task names, metric names) goes through ``html.escape``,
as in ``render``. Bars carry ``class="bar"``, whiskers ``class="interval"``, lines ``class="curve"``, so a
test (or a reader's stylesheet) can find them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Callable

# One colour per run, in run order (a colour-blind-safe palette; none is the pictures' prediction colour).
SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8c564b", "#8172b3", "#937860", "#64b5cd", "#7f7f7f")
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 34, 78  # room for the y ticks, the title and the slanted group names
FONT = 'font-family="sans-serif" font-size="11"'

Point = tuple[float, float]


@dataclass
class Bars:
    """One run's bars: value per group (None: no bar) and, where known, its [low, high] interval."""

    label: str
    values: dict[str, float | None]
    bounds: dict[str, list[float]] = field(default_factory=dict)


def colour_of(label: str, order: list[str]) -> str:
    """A run's colour: by its place among all the report's runs, so it is the same in every chart."""
    i = order.index(label) if label in order else len(order)
    return SERIES_COLOURS[i % len(SERIES_COLOURS)]


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value``: the y axis ends on a round number."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= value)


def _svg(title: str, body: list[str], height: int = HEIGHT) -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
            f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>'
            f'<text x="{LEFT}" y="18" {FONT} font-size="13" font-weight="bold">{escape(title)}</text>')
    return head + "".join(body) + "</svg>"


def _legend(labels: list[str], y: float, order: list[str]) -> list[str]:
    """Coloured squares with the run labels, in one row under the plot."""
    out, x = [], LEFT
    for label in labels:
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour_of(label, order)}"/>'
                   f'<text x="{x + 14}" y="{y}" {FONT}>{escape(label)}</text>')
        x += 24 + 7 * len(label)
    return out


def _y_axis(top: float, y_of: Callable[[float], float], label: str, ticks: int = 5, low: float = 0.0) -> list[str]:
    out = [f'<text x="6" y="{TOP - 6}" {FONT}>{escape(label)}</text>']
    for k in range(ticks + 1):
        value = low + (top - low) * k / ticks
        y = y_of(value)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{LEFT - 4}" y="{y + 4:.1f}" {FONT} text-anchor="end">{value:g}</text>')
    return out


def bar_chart(title: str, groups: list[str], series: list[Bars], y_label: str = "%", order: list[str] | None = None) -> str:
    """Bars per group, one per run, each with its interval drawn as a whisker where one is given."""
    tops = [v for s in series for v in s.values.values() if v is not None]
    tops += [b[1] for s in series for b in s.bounds.values()]
    top = nice_top(max(tops, default=1.0))
    plot_h = HEIGHT - TOP - BOTTOM
    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - max(0.0, min(v, top)) / top)
    order = order or [s.label for s in series]
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(groups))
    bar_w = slot * 0.8 / max(1, len(series))
    body = _y_axis(top, y_of, y_label)
    for g, group in enumerate(groups):
        x0 = LEFT + g * slot + slot * 0.1
        for i, s in enumerate(series):
            body += _bar(s, group, x0 + i * bar_w, bar_w, colour_of(s.label, order), y_of)
        cx = LEFT + (g + 0.5) * slot
        body.append(f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 12}" {FONT} text-anchor="end" '
                    f'transform="rotate(-30 {cx:.1f} {HEIGHT - BOTTOM + 12})">{escape(group)}</text>')
    body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_of(0):.1f}" y2="{y_of(0):.1f}" stroke="#333"/>')
    return _svg(title, body + _legend([s.label for s in series], HEIGHT - 8, order))


def _bar(s: Bars, group: str, x: float, w: float, fill: str, y_of: Callable[[float], float]) -> list[str]:
    value = s.values.get(group)
    if value is None:
        return []
    bounds = s.bounds.get(group)
    tip = f"{s.label}, {group}: {value:.2f}" + (f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else "")
    out = [f'<rect class="bar" x="{x:.1f}" y="{y_of(value):.1f}" width="{w * 0.9:.1f}" '
           f'height="{y_of(0) - y_of(value):.1f}" fill="{fill}"><title>{escape(tip)}</title></rect>']
    if bounds:  # the 95% interval: a vertical whisker with caps, centred on the bar
        cx, lo, hi = x + w * 0.45, y_of(bounds[0]), y_of(bounds[1])
        out.append(f'<path class="interval" d="M{cx:.1f},{lo:.1f}V{hi:.1f}M{cx - 3:.1f},{lo:.1f}h6M{cx - 3:.1f},{hi:.1f}h6" '
                   f'stroke="#222" stroke-width="1.2" fill="none"/>')
    return out


def line_chart(title: str, series: dict[str, list[Point]], y_label: str = "",
               order: list[str] | None = None) -> str:
    """One line per run over training steps; each run keeps its colour from the bar charts (``order``)."""
    order = order or list(series)
    points = [p for pts in series.values() for p in pts]
    xs, ys = [p[0] for p in points] or [0.0, 1.0], [p[1] for p in points] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_lo, y_hi = min(0.0, min(ys)), nice_top(max(ys)) if max(ys) > 0 else 1.0
    plot_h, plot_w = HEIGHT - TOP - BOTTOM + 30, WIDTH - LEFT - RIGHT
    def x_of(x: float) -> float:
        return LEFT + plot_w * (x - x_lo) / (x_hi - x_lo)
    def y_of(y: float) -> float:
        return TOP + plot_h * (1 - (y - y_lo) / (y_hi - y_lo))
    body = _y_axis(y_hi, y_of, y_label, low=y_lo)
    for label, pts in series.items():
        path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in pts)
        body.append(f'<polyline class="curve" points="{path}" fill="none" stroke="{colour_of(label, order)}" stroke-width="1.8">'
                    f"<title>{escape(label)}</title></polyline>")
    base = TOP + plot_h
    body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}" stroke="#333"/>'
                f'<text x="{LEFT}" y="{base + 14}" {FONT}>step {x_lo:g}</text>'
                f'<text x="{WIDTH - RIGHT}" y="{base + 14}" {FONT} text-anchor="end">step {x_hi:g}</text>')
    return _svg(title, body + _legend(list(series), HEIGHT - 8, order))
