"""Charts drawn on the server as inline SVG: they render in any browser with no script and no internet."""

from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 36
COLOURS = ("#2f6fb3", "#d9822b", "#3a9b5c", "#b33a3a")


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]


def _number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.0f}"


def _frame(title: str, kind: str, points: int, body: list[str], low: float, peak: float) -> SafeString:
    plot_h = HEIGHT - TOP - BOTTOM
    zero = _y(0, low, peak)
    axis = [
        f'<line x1="{LEFT}" y1="{zero:.1f}" x2="{WIDTH - RIGHT}" y2="{zero:.1f}" class="axis"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" class="tick">{_number(peak)}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">{_number(low)}</text>',
    ]
    empty = [] if points else [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>']
    svg = (
        f'<svg class="chart" data-kind="{kind}" data-points="{points}" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>' + "".join(axis + body + empty) + "</svg>"
    )
    return mark_safe(svg)  # built here from numbers and escaped text only


def _y(value: float, low: float, peak: float) -> float:
    """The vertical position of `value` on a scale from `low` (bottom) to `peak` (top)."""
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h - (value - low) / (peak - low) * plot_h


def _scale(values: list[float]) -> tuple[float, float]:
    """From the lowest value (or 0) to the highest (or 0): margins below zero show below the axis."""
    low, peak = min([0.0, *values]), max([0.0, *values])
    return low, peak if peak > low else low + 1


def line_chart(title: str, labels: list[str], series: list[Series]) -> SafeString:
    """One line per series over `labels` (days); a None value breaks the line."""
    known = [value for one in series for value in one.values if value is not None]
    low, peak = _scale(known)
    plot_w = WIDTH - LEFT - RIGHT
    step = plot_w / max(len(labels) - 1, 1)
    body = []
    for index in (0, len(labels) - 1) if labels else ():
        x = LEFT + index * step
        # The last day's label ends at its point: centred there, it ran past the chart's right edge ("11-2").
        anchor = "end" if index and index == len(labels) - 1 else "middle"
        body.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 16}" text-anchor="{anchor}" class="tick">{escape(labels[index])}</text>'
        )
    for colour, one in zip(COLOURS, series, strict=False):
        points = [
            (LEFT + index * step, _y(value, low, peak), label, value)
            for index, (label, value) in enumerate(zip(labels, one.values, strict=True))
            if value is not None
        ]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            body += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(one.name)} '
                f"{escape(label)}: {_number(value)}</title></circle>"
                for x, y, label, value in points
            ]
        legend_x = LEFT + 8 + 150 * series.index(one)
        body.append(f'<text x="{legend_x}" y="{HEIGHT - 2}" fill="{colour}" class="legend">■ {escape(one.name)}</text>')
    return _frame(title, "line", len(known), body, low, peak)


def bar_chart(title: str, bars: list[tuple[str, float | None]]) -> SafeString:
    """One bar per label; a None value (no data) draws no bar, only its label and "no data", where a 0 would
    read as a measured zero."""
    known = [value for _, value in bars if value is not None]
    low, peak = _scale(known)
    slot = (WIDTH - LEFT - RIGHT) / max(len(bars), 1)
    body = []
    for index, (label, value) in enumerate(bars):
        x, centre = LEFT + index * slot + slot * 0.15, LEFT + (index + 0.5) * slot
        if value is None:
            body.append(
                f'<text x="{centre:.1f}" y="{_y(0, low, peak) - 4:.1f}" text-anchor="middle" class="tick">'
                f"<title>{escape(label)}: no data</title>no data</text>"
            )
        else:
            top, bottom = sorted((_y(value, low, peak), _y(0, low, peak)))
            body.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" height="{bottom - top:.1f}" '
                f'fill="{COLOURS[0]}"><title>{escape(label)}: {_number(value)}</title></rect>'
            )
        body.append(
            f'<text x="{centre:.1f}" y="{HEIGHT - 16}" text-anchor="middle" class="tick">{escape(label)}</text>'
        )
    return _frame(title, "bar", len(known), body, low, peak)
