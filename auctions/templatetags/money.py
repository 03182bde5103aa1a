"""`{{ price|money }}`: a price as the pages show it, "1,234.50 USD" (the pages' JavaScript formats
the same way: static/flashbid/session.js, fmtPrice)."""

from decimal import Decimal, InvalidOperation

from django import template
from django.conf import settings

register = template.Library()


@register.filter
def money(value) -> str:
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    return f"{amount:,.2f} {settings.CURRENCY}"
