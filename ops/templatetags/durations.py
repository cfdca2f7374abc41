"""How long ago something happened, in the words an operator reads at a glance."""

from datetime import datetime

from django import template

register = template.Library()


@register.filter
def ago(moment: datetime | None, now: datetime) -> str:
    """``under 1 s ago``, ``4 s ago``, ``2 min ago``, ``3 h 5 min ago``."""
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    if seconds < 1:
        return "under 1 s ago"
    if seconds < 60:
        return f"{seconds} s ago"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
