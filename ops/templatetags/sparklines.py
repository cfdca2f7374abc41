"""A server-rendered SVG sparkline: the last hour of a metric, one point a minute, no JavaScript."""

from django import template
from django.utils.html import format_html

register = template.Library()

WIDTH = 60
PAD = 2  # keeps the stroke at either end inside the box
HEIGHT = 24


@register.simple_tag
def sparkline(values, label=""):
    values = list(values or [])
    if not values:
        values = [0]
    peak = max(values) or 1
    step = (WIDTH - 2 * PAD) / max(1, len(values) - 1)
    points = " ".join(
        f"{PAD + index * step:.1f},{HEIGHT - PAD - (value / peak) * (HEIGHT - 2 * PAD):.1f}"
        for index, value in enumerate(values)
    )
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}: last hour, peak {}"><polyline fill="none" '
        'stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        label,
        max(values),
        points,
    )
