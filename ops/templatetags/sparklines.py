"""A server-rendered SVG sparkline: the last hour of a metric, one point a minute, no JavaScript."""

from django import template
from django.utils.html import format_html

register = template.Library()

WIDTH = 72
HEIGHT = 24


@register.simple_tag
def sparkline(values, label=""):
    values = list(values or [])
    if not values:
        values = [0]
    peak = max(values) or 1
    step = WIDTH / max(1, len(values) - 1)
    points = " ".join(
        f"{index * step:.1f},{HEIGHT - 1 - (value / peak) * (HEIGHT - 2):.1f}"
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
