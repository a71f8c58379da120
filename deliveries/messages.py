"""Everything the deliveries app sends out: one builder per message, used by the actions that send them.
Builders return JSON-ready values."""

from datetime import datetime

from drivers.models import Break

# --- to ops (`/ws/ops/`) ----------------------------------------------------------------------------------------


def break_over_limit(open_break: Break, *, now: datetime) -> dict:
    """`driver.break_over_limit`: a driver still on a break longer than the zone allows."""
    driver = open_break.driver
    return {
        "driver_id": str(driver.pk),
        "name": driver.name,
        "zone": driver.home_zone.code,
        "break_id": str(open_break.pk),
        "started_at": open_break.started_at.isoformat(),
        "seconds": round((now - open_break.started_at).total_seconds()),
        "limit_s": driver.home_zone.break_limit_s,
    }
