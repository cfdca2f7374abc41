"""A server-rendered SVG sparkline: the last hour of a metric, one point a minute, no JavaScript.

The chart stretches to its cell's width (its lines keep their thickness), with a tick every quarter
of an hour counted back from now; ``sparkline_axis`` labels those ticks once, under a table's charts.
"""

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()

WIDTH = 120  # viewBox units; on the page the SVG is as wide as its cell
HEIGHT = 28
PAD = 2  # keeps the stroke at either end inside the box
AXIS_Y = HEIGHT - 0.5
TICK_EVERY = 15  # points (minutes)


@register.simple_tag
def sparkline(values, label=""):
    values = list(values or [0])
    span = len(values)  # minutes, one point each, the last one now
    peak = max(values) or 1
    step = (WIDTH - 2 * PAD) / max(1, span - 1)

    def x(index: int) -> str:
        return f"{PAD + index * step:.1f}"

    points = " ".join(
        f"{x(index)},{AXIS_Y - 1.5 - (value / peak) * (HEIGHT - 2 * PAD - 1.5):.1f}"
        for index, value in enumerate(values)
    )
    ticks = format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" vector-effect="non-scaling-stroke"/>',
        ((x(span - 1 - back), HEIGHT - 5, HEIGHT) for back in range(0, span, TICK_EVERY)),
    )
    description = f"{label}: the last {span} minutes, peak {max(values)}"
    return format_html(
        '<figure class="sparkline" title="{description}">'
        '<svg width="100%" height="{height}" viewBox="0 0 {width} {height}" '
        'preserveAspectRatio="none" role="img" aria-label="{description}">'
        '<g class="sparkline-axis" stroke="currentColor">'
        '<line x1="0" y1="{axis_y}" x2="{width}" y2="{axis_y}" vector-effect="non-scaling-stroke"/>'
        "{ticks}</g>"
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        'vector-effect="non-scaling-stroke" points="{points}"/></svg></figure>',
        description=description,
        width=WIDTH,
        height=HEIGHT,
        axis_y=AXIS_Y,
        ticks=ticks,
        points=points,
    )


@register.simple_tag
def sparkline_axis(span: int = 60):
    """The charts' time axis in words, once per table: "−1 h", "−30 min", "now"."""
    # "−1 h", not "−60 min": three labels must fit a narrow column without wrapping.
    return format_html(
        '<div class="sparkline-times"><span>−{start}</span><span>−{half} min</span>'
        "<span>now</span></div>",
        start=f"{span // 60} h" if span % 60 == 0 else f"{span} min",
        half=span // 2,
    )
