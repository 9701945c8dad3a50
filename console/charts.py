"""Charts as inline SVG, drawn on the server: no JavaScript library to ship, nothing fetched by the
browser, and a page that prints and screenshots as it is. Every chart's data is also shown as a
table or offered as CSV by the page that draws it (screen readers and spreadsheets).

    bars([("prime", 12.5), ("late", 3.1)], title="Rating by daypart")        -> Markup
    lines({"v1": [(x, y), ...], "v2": [...]}, title="CTR by day")            -> Markup
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 640, 220, 48, 40, 24
PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#9b2c2c", "#6b46c1", "#718096")


def _num(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _frame(title: str, body: list[str], top: float) -> Markup:
    plot_h = HEIGHT - PAD_B - PAD_T
    grid = []
    for i in range(5):
        y = PAD_T + plot_h * (1 - i / 4)
        grid.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{_num(top * i / 4)}</text>')
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
                  f'<title>{escape(title)}</title>{"".join(grid)}{"".join(body)}</svg>')


def bars(data: Sequence[tuple[str, float]], *, title: str) -> Markup:
    """Vertical bars, one per (label, value); at most 40 shown."""
    data = list(data)[:40]
    if not data:
        return Markup("")
    top = max(max(v for _, v in data), 1e-9)
    plot_w, plot_h = WIDTH - PAD_L - 8, HEIGHT - PAD_B - PAD_T
    step = plot_w / len(data)
    body = []
    for i, (label, value) in enumerate(data):
        h = plot_h * max(value, 0) / top
        x = PAD_L + i * step
        body.append(f'<rect x="{x + step * 0.1:.1f}" y="{PAD_T + plot_h - h:.1f}" width="{step * 0.8:.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {_num(value)}</title></rect>')
        if len(data) <= 16 or i % max(1, len(data) // 12) == 0:
            body.append(f'<text x="{x + step / 2:.1f}" y="{HEIGHT - PAD_B + 14}" text-anchor="middle">'
                        f'{escape(label[:12])}</text>')
    return _frame(title, body, top)


def lines(series: Mapping[str, Sequence[tuple[str, float]]], *, title: str) -> Markup:
    """One line per series over shared, ordered x labels; a legend under the plot."""
    xs = sorted({x for points in series.values() for x, _ in points})
    values = [v for points in series.values() for _, v in points]
    if not xs or not values:
        return Markup("")
    top = max(max(values), 1e-9)
    plot_w, plot_h = WIDTH - PAD_L - 8, HEIGHT - PAD_B - PAD_T
    pos = {x: PAD_L + (plot_w * i / max(len(xs) - 1, 1)) for i, x in enumerate(xs)}
    body = []
    for k, (name, points) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        coords = " ".join(f"{pos[x]:.1f},{PAD_T + plot_h * (1 - max(v, 0) / top):.1f}" for x, v in sorted(points))
        body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, v in points:
            body.append(f'<circle cx="{pos[x]:.1f}" cy="{PAD_T + plot_h * (1 - max(v, 0) / top):.1f}" r="3" '
                        f'fill="{colour}"><title>{escape(name)} {escape(x)}: {_num(v)}</title></circle>')
        body.append(f'<text x="{PAD_L + 110 * k}" y="{HEIGHT - 6}" fill="{colour}">■ {escape(name[:16])}</text>')
    for i, x in enumerate(xs):
        if len(xs) <= 12 or i % max(1, len(xs) // 10) == 0:
            anchor = "start" if i == 0 else "end" if i == len(xs) - 1 else "middle"
            body.append(f'<text x="{pos[x]:.1f}" y="{HEIGHT - PAD_B + 14}" text-anchor="{anchor}">'
                        f'{escape(x[-11:])}</text>')
    return _frame(title, body, top)
