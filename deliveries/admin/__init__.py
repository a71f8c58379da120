"""The ops console (SPEC: ops staff work in the Django admin). One module per screen."""

from deliveries.admin import delivery, driver, escalation, records

__all__ = ["delivery", "driver", "escalation", "records"]
