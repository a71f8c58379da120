"""How the KPI dashboard writes its figures for people (the API and the CSV keep the plain numbers)."""

from django import template

register = template.Library()


@register.filter
def percent(rate: float | None) -> str:
    """A rate (0.614) as the charts beside it read: "61%"; "–" when there was nothing to rate."""
    return "–" if rate is None else f"{rate * 100:.0f}%"
