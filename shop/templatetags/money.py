"""How the storefront writes an amount: "€ 12,345.50", with thousands separators, and the sign
held to its number by a no-break space so a narrow column never splits them."""

from django import template
from django.template.defaultfilters import floatformat

register = template.Library()


@register.filter
def euros(amount) -> str:
    return f"€\u00a0{floatformat(amount, '2g')}"
